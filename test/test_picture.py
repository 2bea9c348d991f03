"""The evaluation picture: panels coloured on one scale, unknown pixels black, a colour bar that matches."""
import numpy as np

from ros2_stereo_depth.evaluation.picture import SCALE_BAR_PX, comparison_picture
from ros2_stereo_depth.fileio import colourise_disparity


def test_panels_share_one_colour_scale_and_unknown_is_black():
    h, w = 40, 50
    left = np.full((h, w, 3), 200, np.uint8)
    network = np.full((h, w), 10.0, np.float32)
    ground_truth = np.full((h, w), 10.0, np.float32)
    ground_truth[:, 25:] = np.nan  # unknown ground truth
    picture = comparison_picture(left, [("net", network), ("gt", ground_truth)], max_disparity_px=20.0, width_px=300)
    assert picture.shape == (h * 2 + SCALE_BAR_PX, 300, 3)  # three 50-px tiles scaled x2, plus the bar
    colour_10 = colourise_disparity(np.array([[10.0]]), 20.0)[0, 0]
    assert np.array_equal(picture[60, 150], colour_10)  # network tile centre (below the title)
    assert np.array_equal(picture[60, 215], colour_10)  # known ground truth, same colour as the network
    assert np.array_equal(picture[60, 285], [0, 0, 0])  # unknown ground truth
    assert np.array_equal(picture[60, 50], [200, 200, 200])  # the left image itself
    bar = picture[h * 2:]
    middle = colourise_disparity(np.array([[10.0]]), 20.0)[0, 0]
    assert np.abs(bar[2, 150].astype(int) - middle.astype(int)).max() <= 20  # half-way along the bar: 10 px
    assert not np.array_equal(bar[2, 5], bar[2, 295])  # the bar runs from one end of the map to the other
