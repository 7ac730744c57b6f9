"""Package list for setuptools (metadata lives in pyproject.toml).

Data folders live at the top level beside the code (protocols as data, the papers' reported numbers) and ship
inside the package, so a regular, non-editable install finds them: `protocols/` as `ferbench._protocols`,
`leaderboards/` (reported.yaml only, not rendered pages) as `ferbench._leaderboards`, `examples/my_model.py` (the
own-model example that `ferbench models --example` prints) as `ferbench._examples`. pyproject's
packages.find cannot map a folder outside ferbench/ into the package, hence this file.
"""

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).resolve().parent
SHIPPED = {
    name: spec
    for name, spec in {
        "ferbench._protocols": ("protocols", ["*.yaml", "README.md"]),
        "ferbench._leaderboards": ("leaderboards", ["reported.yaml"]),
        "ferbench._examples": ("examples", ["my_model.py"]),  # `ferbench models --example`
    }.items()
    if (HERE / spec[0]).is_dir()  # a partial source copy (e.g. a packaging test's) may carry only some folders
}

setup(
    packages=[*find_packages(include=["ferbench", "ferbench.*"]), *SHIPPED],
    package_dir={name: folder for name, (folder, _) in SHIPPED.items()},
    package_data={name: files for name, (_, files) in SHIPPED.items()},
)
