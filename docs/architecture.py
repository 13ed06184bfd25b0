"""The M4SurvivalEstimator network, drawn for the docs (run by the plot directive)."""

import matplotlib.pyplot as plt
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Rectangle

BLUE, ORANGE, GREEN, GREY, RED = "#4c72b0", "#dd8452", "#55a868", "#8c8c8c", "#c44e52"
PURPLE = "#8172b3"

fig, ax = plt.subplots(figsize=(13, 5.6))
ax.set_xlim(0, 13)
ax.set_ylim(-0.2, 5.6)
ax.axis("off")


def box(x, y, w, h, text, color, *, size=9, alpha=0.16, weight="normal", hatch=None):
    ax.add_patch(
        FancyBboxPatch(
            (x, y),
            w,
            h,
            boxstyle="round,pad=0.02,rounding_size=0.08",
            facecolor=color,
            edgecolor=color,
            alpha=alpha if hatch is None else 0.08,
            hatch=hatch,
            linewidth=1.2,
        )
    )
    ax.add_patch(
        FancyBboxPatch(
            (x, y),
            w,
            h,
            boxstyle="round,pad=0.02,rounding_size=0.08",
            facecolor="none",
            edgecolor=color,
            linewidth=1.2,
        )
    )
    ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=size, weight=weight)


def arrow(start, end, color="0.35", style="-|>", **kwargs):
    ax.add_patch(
        FancyArrowPatch(
            start, end, arrowstyle=style, mutation_scale=11, color=color, lw=1.1, **kwargs
        )
    )


# -- one patient row: modality blocks of columns ------------------------------------
rows = [
    ("t1__medimageinsight__0..1023", BLUE, False),
    ("t1pc__medimageinsight__...", BLUE, False),
    ("t2__medimageinsight__...", BLUE, False),
    ("flair__medimageinsight__...", BLUE, True),
    ("pathology__uni2h__0..1535", ORANGE, False),
    ("clinical__age, clinical__stage_II, ...", GREEN, False),
]
ys = [4.55, 3.9, 3.25, 2.6, 1.6, 0.6]
ax.text(1.3, 5.3, "one row of X", ha="center", fontsize=10, weight="bold")
for (label, color, missing), y in zip(rows, ys, strict=True):
    box(
        0.05,
        y,
        2.5,
        0.5,
        label + ("\nall NaN: missing" if missing else ""),
        color,
        size=7.5,
        hatch="////" if missing else None,
    )

# -- encoders -----------------------------------------------------------------------
ax.text(4.0, 5.3, "encoders", ha="center", fontsize=10, weight="bold")
box(3.05, 2.6, 1.9, 2.45, "shared radiology\nMLP encoder\n(encoder_groups)", BLUE, size=8.5)
box(3.05, 1.6, 1.9, 0.5, "pathology MLP", ORANGE, size=8.5)
box(3.05, 0.6, 1.9, 0.5, "clinical MLP", GREEN, size=8.5)
ax.text(
    4.0,
    0.2,
    "Linear, GELU, Dropout,\nLinear, LayerNorm",
    ha="center",
    va="center",
    fontsize=7.5,
    color="0.3",
)
for y in ys[:3]:
    arrow((2.6, y + 0.25), (3.05, y + 0.25))
arrow((2.6, ys[3] + 0.25), (3.05, ys[3] + 0.25), color=GREY, linestyle=":")
arrow((2.6, 1.85), (3.05, 1.85))
arrow((2.6, 0.85), (3.05, 0.85))

# -- tokens -------------------------------------------------------------------------
ax.text(5.95, 5.3, "tokens", ha="center", fontsize=10, weight="bold")
token_colors = [BLUE, BLUE, BLUE, GREY, ORANGE, GREEN]
for y, color, (_, _, missing) in zip(ys, token_colors, rows, strict=True):
    for k in range(5):
        ax.add_patch(
            Rectangle(
                (5.35 + 0.2 * k, y + 0.1),
                0.18,
                0.3,
                facecolor=color,
                alpha=0.45 if not missing else 0.25,
                edgecolor=color,
            )
        )
    if missing:
        ax.text(5.85, y - 0.08, "mask token", ha="center", va="top", fontsize=7.5, color="0.3")
    arrow((4.95, y + 0.25), (5.33, y + 0.25), color=GREY if missing else "0.35")
ax.text(
    5.95,
    0.2,
    "+ modality embedding $e_i$\nwidth d_model",
    ha="center",
    va="center",
    fontsize=7.5,
    color="0.3",
)

# -- adapter ------------------------------------------------------------------------
ax.text(7.65, 5.3, "adapter", ha="center", fontsize=10, weight="bold")
box(
    6.85,
    0.6,
    1.6,
    4.45,
    "Mamba blocks\n(n_layers=2)\n\nor Transformer\nor MLP over the\nconcatenation\n\n"
    "then mean over\npresent tokens",
    PURPLE,
    size=8.5,
)
for y in ys:
    arrow((6.37, y + 0.25), (6.85, y + 0.25))

# -- risk ---------------------------------------------------------------------------
ax.text(9.75, 5.3, "bounded log-hazard", ha="center", fontsize=10, weight="bold")
box(8.95, 3.3, 1.6, 0.75, "risk head\n$z = w^\\top r + c$", PURPLE, size=8.5)
box(8.95, 1.45, 1.6, 0.75, "linear Cox term\n$\\beta^\\top x$ (linear_term)", GREY, size=8.5)
box(8.88, 2.45, 1.74, 0.55, "$\\eta = b\\,\\tanh((z + \\beta^\\top x)\\,/\\,b)$", RED, size=7.5)
arrow((8.45, 3.67), (8.95, 3.67))
ax.text(8.7, 3.8, "$r$", ha="center", fontsize=9)
arrow((9.75, 3.3), (9.75, 3.0))
arrow((9.75, 2.2), (9.75, 2.45))
# the linear term reads the input columns directly
arrow((1.3, 0.55), (9.0, 1.45), color=GREY, connectionstyle="arc3,rad=0.12", linestyle="--")
ax.text(9.75, 1.35, "reads all columns $x$", ha="center", va="top", fontsize=7.5, color="0.3")

# -- survival -----------------------------------------------------------------------
ax.text(11.9, 5.3, "outputs", ha="center", fontsize=10, weight="bold")
box(11.05, 3.55, 1.75, 0.75, "predict(X)\nrisk $\\eta$, higher = worse", RED, size=8)
box(11.05, 2.3, 1.75, 0.95, "Breslow baseline\n$S(t\\mid x) = S_0(t)^{e^{\\eta}}$", RED, size=8)
box(11.05, 1.2, 1.75, 0.75, "predict_risk_group\nlow / mid / high", RED, size=8)
arrow((10.55, 2.72), (11.05, 3.9))
arrow((10.55, 2.72), (11.05, 2.77))
arrow((10.55, 2.72), (11.05, 1.57))
ax.text(
    11.92,
    0.75,
    "trained on the Cox\npartial likelihood",
    ha="center",
    va="center",
    fontsize=7.5,
    color="0.3",
)

plt.show()
