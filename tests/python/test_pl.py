import numpy as np

from pyclams import pl


def test_plots_return_axes_and_save(trained_model, query, tmp_path):
    out = trained_model.annotate(query, copy=True)
    ax = pl.annotation_heatmap(out, truth_key="cell_type", save=str(tmp_path / "h.png"))
    # columns are query labels, normalised per column
    assert [t.get_text() for t in ax.get_xticklabels()] == sorted(
        out.obs["cell_type"].astype(str).unique())
    is_ood = ~out.obs["cell_type"].isin(trained_model.classes).to_numpy()
    pl.ood_histogram(out.obs["clams_log_px"], is_ood, save=str(tmp_path / "o.png"))
    correct = (out.obs["clams_label_raw"].astype(str) == out.obs["cell_type"].astype(str))
    pl.reliability_diagram(out.obs["clams_confidence"], correct.to_numpy(),
                           save=str(tmp_path / "r.png"))
    pl.training_curves(trained_model.history, save=str(tmp_path / "t.png"))
    for name in ("h", "o", "r", "t"):
        assert (tmp_path / f"{name}.png").stat().st_size > 1000
    assert np.isfinite(out.obs["clams_log_px"]).all()
