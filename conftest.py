"""Root conftest.

The embedgate plugin is registered through the `pytest11` entry point (pip install -e .), so that its options
are known before pytest picks its rootdir: `pytest --model ~/models/x` then works without `=`. It only acts
where the ini says `embedgate = true` (pytest.ini here). Without the install, load it from here instead.
"""

from importlib.metadata import entry_points

if not any(ep.value == "embedgate.plugin" for ep in entry_points(group="pytest11")):
    pytest_plugins = ["embedgate.plugin"]
