"""Helpers shared by misp-ti's own tests (not the kit: downstream projects use
``misp_ti.testing``). Importable as ``helpers.<module>`` because
``[tool.pytest.ini_options] pythonpath`` puts ``tests/`` on ``sys.path``;
subprocess tests add ``tests/`` to ``PYTHONPATH`` themselves.
"""
