"""Package discovery lives here (not in pyproject.toml) because setuptools' pyproject `packages.find` cannot
add a package mapped from a folder outside `ferbench/`: the data folders the SPEC puts at the top level
(leaderboards/ with the papers' reported numbers) ship inside the package under these names.
A plain `pip install .` then finds them with importlib.resources; a source checkout reads the folders directly."""

from setuptools import find_packages, setup

SHIPPED = {"ferbench._leaderboards": ("leaderboards", ["reported.yaml"])}

setup(
    packages=find_packages(include=["ferbench", "ferbench.*"]) + list(SHIPPED),
    package_dir={name: folder for name, (folder, _) in SHIPPED.items()},
    package_data={name: files for name, (_, files) in SHIPPED.items()},
)
