"""Install a throw-away plugin under an entry point, for the length of a test.

The plugin manager finds third-party plugins through ``importlib.metadata``
(the ``misp_ti`` entry-point group). Instead of ``pip install`` into the
running interpreter (slow, and it leaks into every later test), this writes
the plugin's module and a minimal ``*.dist-info`` directory into a temporary
folder and puts that folder on ``sys.path``: ``importlib.metadata`` then sees
an installed distribution, exactly as it would see a wheel installed by pip.
:meth:`InstalledPlugin.uninstall` removes it again (the fixture does so at
teardown).

Only the standard library is imported here (this module is loaded with the
pytest plugin in every project that has misp-ti installed).
"""

from __future__ import annotations

import importlib
import re
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["InstalledPlugin", "install_entry_point_plugin", "install_path_on_sys_path"]

_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass
class InstalledPlugin:
    """A plugin made visible to ``importlib.metadata`` until :meth:`uninstall`."""

    name: str
    module: str
    site_dir: Path
    group: str
    dist_name: str
    _modules_before: frozenset[str] = field(default_factory=frozenset, repr=False)

    def uninstall(self) -> None:
        """Take the folder off ``sys.path`` and forget the modules imported from it."""
        site = str(self.site_dir)
        while site in sys.path:
            sys.path.remove(site)
        for name, module in list(sys.modules.items()):
            origin = getattr(module, "__file__", None) or ""
            if name not in self._modules_before and origin.startswith(site):
                del sys.modules[name]
        importlib.invalidate_caches()

    def __enter__(self) -> InstalledPlugin:
        return self

    def __exit__(self, *exc: object) -> None:
        self.uninstall()


def install_path_on_sys_path(site_dir: Path) -> None:
    """Make a folder holding modules and ``*.dist-info`` directories importable and discoverable."""
    site = str(site_dir)
    if site not in sys.path:
        sys.path.insert(0, site)
    importlib.invalidate_caches()


def install_entry_point_plugin(
    directory: str | Path,
    name: str,
    source: str,
    *,
    module: str | None = None,
    group: str = "misp_ti",
    dist_name: str | None = None,
    version: str = "0.0.1",
) -> InstalledPlugin:
    """Write ``source`` as module ``module`` and register it as entry point ``name``.

    :param directory: where to create the fake site folder (e.g. ``tmp_path``).
    :param name: the entry-point name (also the plugin name pluggy registers it under).
    :param source: the module's Python source (dedented for you).
    :param module: the module name (default: ``name``).
    :param group: the entry-point group (``misp_ti`` for misp-ti plugins).
    :returns: an :class:`InstalledPlugin`; call ``uninstall()`` (or use it as a
        context manager) when done.
    """
    module = module or name
    if not all(_NAME_RE.match(part) for part in module.split(".")):
        raise ValueError(f"install_entry_point_plugin: {module!r} is not a valid module name")
    if not re.match(r"^[A-Za-z0-9_.-]+$", name):
        raise ValueError(f"install_entry_point_plugin: {name!r} is not a valid entry-point name")
    dist_name = dist_name or f"misp-ti-test-plugin-{name}".replace("_", "-")
    site_dir = Path(directory) / f"site-{dist_name}"
    site_dir.mkdir(parents=True, exist_ok=True)

    parts = module.split(".")
    package_dir = site_dir.joinpath(*parts[:-1])
    package_dir.mkdir(parents=True, exist_ok=True)
    for depth in range(1, len(parts)):
        init = site_dir.joinpath(*parts[:depth], "__init__.py")
        if not init.exists():
            init.write_text("", encoding="utf-8")
    (package_dir / f"{parts[-1]}.py").write_text(textwrap.dedent(source), encoding="utf-8")

    normalized = re.sub(r"[-_.]+", "_", dist_name)
    dist_info = site_dir / f"{normalized}-{version}.dist-info"
    dist_info.mkdir(exist_ok=True)
    (dist_info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {dist_name}\nVersion: {version}\n", encoding="utf-8"
    )
    (dist_info / "entry_points.txt").write_text(f"[{group}]\n{name} = {module}\n", encoding="utf-8")

    before = frozenset(sys.modules)
    install_path_on_sys_path(site_dir)
    return InstalledPlugin(name, module, site_dir, group, dist_name, before)
