"""Package list for setuptools (metadata lives in pyproject.toml).

The bundled protocol files live in the top-level `protocols/` folder (protocols as data, beside the code) and
ship inside the package as `ferbench._protocols`, so a regular, non-editable install finds them.
"""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["ferbench", "ferbench.*"]), "ferbench._protocols"],
    package_dir={"ferbench._protocols": "protocols"},
    package_data={"ferbench._protocols": ["*.yaml", "README.md"]},
)
