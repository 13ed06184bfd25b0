"""Order of the gallery: from a first fit to ablations."""

from pathlib import Path

ORDER = (
    "plot_quickstart.py",
    "plot_own_data.py",
    "plot_risk_groups.py",
    "plot_cox_baseline.py",
    "plot_missing_modalities.py",
    "plot_adapter_ablation.py",
    "plot_foundation_model_ablation.py",
)


class ExampleOrder:
    """Sort key for sphinx-gallery: the examples above first, in that order, then the rest
    by file name."""

    def __init__(self, src_dir):
        self.src_dir = src_dir

    def __repr__(self):
        return f"<{type(self).__name__}>"

    def __call__(self, filename):
        name = Path(filename).name
        return (ORDER.index(name), "") if name in ORDER else (len(ORDER), name)
