"""The comparison's plots: each base's line is the path it carried on from; rejected and skipped points are marked;
identical lines stay visible."""

import matplotlib

matplotlib.use("Agg")

from dharma_train.reporting.plots import draw_by_base, kept_path  # noqa: E402

POINTS = ["base", "structured", "dpo", "quantize"]


def test_the_kept_path_goes_round_a_rejected_point_which_branches_off_the_point_before_it():
    kept, rejected = kept_path([0.1, 0.5, 0.3, 0.6], ["base", "kept", "rejected", "kept"])
    assert kept == [(0, 0.1), (1, 0.5), (3, 0.6)]
    assert rejected == [((1, 0.5), (2, 0.3))]
    assert kept_path([0.1, None, 0.4], [None, None, None]) == ([(0, 0.1), (2, 0.4)], [])


def test_identical_bases_stay_visible_and_rejected_and_skipped_points_are_marked():
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots()
    values = [0.1, 0.5, 0.5, 0.3]
    draw_by_base(axis, POINTS, {"a": values, "b": list(values)},
                 {"a": ["base", "kept", "skipped", "rejected"], "b": ["base", "kept", "skipped", "rejected"]})
    lines = {line.get_label(): line for line in axis.get_lines()}
    a, b = lines["a"], lines["b"]
    assert list(a.get_ydata()) == list(b.get_ydata()) == [0.1, 0.5, 0.5], "the line stops short of the rejected point"
    assert all(xb > xa for xa, xb in zip(a.get_xdata(), b.get_xdata())), "side by side, not on top of each other"
    assert a.get_marker() != b.get_marker()
    crosses = [line for line in axis.get_lines() if line.get_marker() == "X" and len(line.get_xdata())]
    assert sorted(round(float(line.get_xdata()[0])) for line in crosses) == [3, 3]
    assert all(list(line.get_ydata()) == [0.3] for line in crosses)
    hollow = [line for line in axis.get_lines() if line.get_markerfacecolor() == "white" and len(line.get_xdata())]
    assert [list(line.get_ydata()) for line in hollow] == [[0.5], [0.5]]
    legend = {text for text in axis.get_legend_handles_labels()[1]}
    assert {"rejected by the gate (not carried on)", "skipped (input passed on)"} <= legend
    plt.close(figure)
