"""Redraw the README's figures in docs/images/ from a `keras-eql demo` output directory.

Usage (after `keras-eql demo`, seed 0, the defaults):
    python scripts/readme_figures.py demo_output

Fig. 1 is the demo's own `gradient_statistics.png`; Fig. 2 is drawn from its
`statistics.csv` for cross-entropy and Softmax-EQL on a shared y axis.
"""

import os
import shutil
import sys

from keras_eql.plotting import plot_ratio_history

TITLES = {"cross_entropy": "cross-entropy", "softmax_eql": "Softmax-EQL"}


def main(output_dir, images="docs/images"):
    shutil.copyfile(os.path.join(output_dir, "gradient_statistics.png"),
                    os.path.join(images, "gradient_statistics.png"))
    figures = {output: plot_ratio_history(
        os.path.join(output_dir, "statistics.csv"), output=output, figsize=(6.4, 4.0), dpi=100,
        title=f"{title}: mean positive / negative ratio per group") for output, title in TITLES.items()}
    low = min(figure.axes[0].get_ylim()[0] for figure in figures.values())
    high = max(figure.axes[0].get_ylim()[1] for figure in figures.values())
    for output, figure in figures.items():
        figure.axes[0].set_ylim(low, high)  # one scale: the two are compared side by side
        figure.savefig(os.path.join(images, f"ratio_history_{output}.png"))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "demo_output")
