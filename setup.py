"""Package layout: three source folders form one import namespace.

``saferl/`` is the core and the app, ``datasets/`` is installed as ``saferl.datasets`` and
``algorithms/`` as ``saferl.algorithms``, so the folders show the one-way data flow
(datasets -> core -> algorithms) while users import everything from ``saferl``.
Everything else lives in ``pyproject.toml``.
"""

from setuptools import find_packages, setup

ROOTS = {"saferl": "saferl", "saferl.datasets": "datasets", "saferl.algorithms": "algorithms"}


def _packages() -> list[str]:
    packages: list[str] = []
    for name, folder in ROOTS.items():
        packages.append(name)
        packages += [f"{name}.{sub}" for sub in find_packages(where=folder)]
    return packages


setup(packages=_packages(), package_dir=ROOTS)
