"""The package rules of docs/architecture.md, read from the source (module- and function-level
imports alike): who may import whom, and no import cycle among podium's modules."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("harness", "baseline", "leaderboard", "kagglebridge")


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


def imports(path: Path) -> set[str]:
    """Absolute names imported by one module (relative imports resolved)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            out.add(prefix)
            out.update(f"{prefix}.{a.name}" for a in node.names)
    return out


MODULES = {module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")} | {"podium_cli": ROOT / "podium_cli.py"}
GRAPH = {m: imports(p) for m, p in MODULES.items()}


def under(name: str, *prefixes: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


@pytest.mark.parametrize("module", sorted(m for m in MODULES if under(m, "harness")))
def test_harness_imports_no_web_and_no_other_package(module):
    bad = {i for i in GRAPH[module] if under(i, "flask", "flask_wtf", "flask_sqlalchemy", "sqlalchemy", "leaderboard", "baseline", "kagglebridge")}
    assert not bad, f"{module} imports {sorted(bad)}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if under(m, "kagglebridge")))
def test_kagglebridge_depends_on_harness_only(module):
    bad = {i for i in GRAPH[module] if under(i, "flask", "leaderboard", "baseline")}
    assert not bad, f"{module} imports {sorted(bad)}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if under(m, "baseline")))
def test_baseline_depends_on_harness_only(module):
    bad = {i for i in GRAPH[module] if under(i, "flask", "leaderboard")}
    assert not bad, f"{module} imports {sorted(bad)}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if under(m, "leaderboard.client", "leaderboard.protocol")))
def test_http_clients_share_only_the_protocol_with_the_server(module):
    server = {i for i in GRAPH[module] if under(i, "leaderboard", "flask", "sqlalchemy")
              and not under(i, "leaderboard.protocol", "leaderboard.client")}
    assert not server, f"{module} imports server code {sorted(server)}"


@pytest.mark.parametrize("module", ["leaderboard.client.worker", "leaderboard.client.submit", "leaderboard.protocol"])
def test_importing_a_client_loads_nothing_of_the_server(module):
    """In a fresh process: the package's ``__init__`` too, not only the client's own imports."""
    import subprocess
    import sys

    code = (f"import sys, {module}\n"
            "server = ('flask', 'flask_sqlalchemy', 'flask_wtf', 'sqlalchemy', 'werkzeug', 'leaderboard.app',\n"
            "          'leaderboard.models', 'leaderboard.state', 'leaderboard.extensions')\n"
            "print(sorted(n for n in server if n in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]", f"importing {module} loaded {out.stdout.strip()}"


def test_no_import_cycle_among_podium_modules():
    own = {m: {d for d in deps if d in MODULES and d != m and not under(m, d) and not under(d, m)}
           for m, deps in GRAPH.items()}

    def reaches(start: str, target: str) -> bool:
        seen, todo = set(), [start]
        while todo:
            for d in own[todo.pop()]:
                if d == target:
                    return True
                if d not in seen:
                    seen.add(d)
                    todo.append(d)
        return False

    cycles = sorted({tuple(sorted((m, d))) for m, deps in own.items() for d in deps if reaches(d, m)})
    assert not cycles, f"import cycles: {cycles}"


def test_readme_documents_every_setting():
    from leaderboard.config import documentation

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "docs/architecture.md" in readme and (ROOT / "docs" / "architecture.md").is_file()
    for key, env, _, _ in documentation():
        assert f"| `{key}` |" in readme, f"README's Configuration table lacks {key}"
        if env != "—":
            assert f"`{env}`" in readme, f"README's Configuration table lacks {env}"


def test_settings_come_from_the_environment_unless_given(monkeypatch):
    from leaderboard.config import Config

    env = {"PODIUM_JOB_LEASE_SECONDS": "7", "PODIUM_JOB_MAX_ATTEMPTS": "5", "PODIUM_SECURE_COOKIES": "true"}
    config = Config.resolve({"JOB_MAX_ATTEMPTS": 2}, environ=env)
    assert (config.job_lease_seconds, config.job_max_attempts, config.session_cookie_secure) == (7, 2, True)
    assert Config.resolve({}, environ={}).job_lease_seconds == 120


ROUTE_DECORATORS = {"route", "get", "post", "put", "delete", "patch"}
MAX_VIEW_LINES = 20


def route_functions():
    for name, path in sorted(MODULES.items()):
        if not under(name, "leaderboard") or under(name, "leaderboard.client", "leaderboard.migrations"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef) and any(
                    isinstance(d, ast.Call) and (
                        (isinstance(d.func, ast.Attribute) and d.func.attr in ROUTE_DECORATORS)
                        or (isinstance(d.func, ast.Name) and d.func.id == "method"))  # kaggle_api's methods
                    for d in node.decorator_list):
                yield name, node


@pytest.mark.parametrize("module,view", [(m, v) for m, v in route_functions()], ids=lambda x: getattr(x, "name", x))
def test_views_are_short_and_never_own_a_transaction(module, view):
    """docs/architecture.md "Who commits": a view parses the request, calls one service and maps its
    outcome; the service owns the transaction (``write_transaction``), never the view."""
    body = view.body[1:] if isinstance(view.body[0], ast.Expr) and isinstance(view.body[0].value, ast.Constant) else view.body
    lines = view.end_lineno - body[0].lineno + 1
    assert lines <= MAX_VIEW_LINES, f"{module}.{view.name} is {lines} lines: move the rules into a service"
    owned = [n for n in ast.walk(view) if isinstance(n, ast.Call) and (
        (isinstance(n.func, ast.Attribute) and n.func.attr in ("commit", "rollback"))
        or (isinstance(n.func, ast.Name) and n.func.id == "write_transaction"))]
    assert not owned, f"{module}.{view.name} commits or opens a write transaction itself"


def test_states_are_compared_through_their_enums():
    """No submission, job or Grad-CAM state is spelled as a bare string in the server's code or
    templates (docs/architecture.md "A state"): the StrEnums are the one list."""
    import re

    from leaderboard.explanations import ExplanationStatus
    from leaderboard.protocol import JobStatus, SubmissionStatus

    states = {s.value for enum in (SubmissionStatus, JobStatus, ExplanationStatus) for s in enum} - {"none"}
    found = []
    for name, path in sorted(MODULES.items()):
        if not under(name, "leaderboard") or under(name, "leaderboard.migrations"):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        enum_bodies = {id(n) for c in ast.walk(tree) if isinstance(c, ast.ClassDef)
                       and any(getattr(b, "id", "") == "StrEnum" for b in c.bases) for n in ast.walk(c)}
        docstrings = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant)}
        for node in ast.walk(tree):
            if (isinstance(node, ast.Constant) and node.value in states and id(node) not in enum_bodies
                    and id(node) not in docstrings):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.value!r}")
    pattern = re.compile(r"""['"](%s)['"]""" % "|".join(sorted(states)))
    for template in sorted((ROOT / "leaderboard" / "templates").rglob("*.html")):
        for number, line in enumerate(template.read_text(encoding="utf-8").splitlines(), 1):
            if pattern.search(line):
                found.append(f"{template.relative_to(ROOT)}:{number} {line.strip()[:80]}")
    assert not found, "bare state strings: " + "; ".join(found)
