"""deploytool's layout: ports, names and rendered files of this install."""

import stat
from pathlib import Path

from deploytool import ports
from deploytool.layout import Install
from deploytool.render import outputs

ROOT = Path(__file__).resolve().parent.parent


def test_installs_get_disjoint_ports_inside_the_block() -> None:
    install = Install.load(ROOT)
    start = install.project.port_block_start
    seen: set[int] = set()
    for install_type in ports.SLOTS:
        used = set(ports.port_map(start, install_type).values())
        assert used <= set(ports.block_range(start))
        assert not used & seen
        seen |= used


def test_every_template_is_rendered() -> None:
    install = Install.load(ROOT)
    for path in outputs(install).values():
        assert path.is_file(), f"{path} missing: run `bin/deploytool render`"


def test_settings_local_is_private() -> None:
    install = Install.load(ROOT)
    assert stat.S_IMODE(install.settings_local.stat().st_mode) == 0o600
    assert install.settings_link.resolve() == install.settings_local.resolve()
