"""The house's rules, read from the source: dependencies run one way (interfaces ->
services/selectors -> models -> core), with no cycle between the project's modules."""

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("core", "config", "portal", "compute", "billing", "pairing", "sail")
# What a service must not know of: the HTTP layer (DRF, the API package, views).
API_LAYER = ("rest_framework", "drf_spectacular", "portal.api")


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules(root: Path = ROOT) -> dict[str, Path]:
    return {
        module_name(path, root): path
        for package in PACKAGES
        for path in (root / package).rglob("*.py")
        if "migrations" not in path.parts
    }


def _imported(node: ast.Import | ast.ImportFrom) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level or not node.module:
        return []
    return [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]


def imports(path: Path) -> Iterator[tuple[str, int, bool]]:
    """``(name, line, in_function)`` of each import the module makes when it runs; those
    under ``if TYPE_CHECKING:`` are for type checkers only."""

    def walk(nodes: list[ast.stmt], in_function: bool) -> Iterator[tuple[str, int, bool]]:
        for node in nodes:
            if isinstance(node, ast.Import | ast.ImportFrom):
                for name in _imported(node):
                    yield name, node.lineno, in_function
            elif isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                yield from walk(node.orelse, in_function)
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                yield from walk(node.body, True)
            else:
                for field in ("body", "orelse", "finalbody", "handlers"):
                    children = getattr(node, field, None)
                    if isinstance(children, list):
                        yield from walk(
                            [c for c in children if isinstance(c, ast.stmt)], in_function
                        )
                for handler in getattr(node, "handlers", []):
                    yield from walk(handler.body, in_function)

    yield from walk(ast.parse(path.read_text()).body, False)


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """Module -> the project's modules it imports at its top level."""
    modules = project_modules(root)
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for imported, _, in_function in imports(path):
            target = _resolve(imported, modules)
            if target and target != name and not in_function:
                graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in graph[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def app_pairs(graph: dict[str, set[str]]) -> set[tuple[str, str]]:
    """Pairs of packages that import each other."""
    edges = {(m.split(".")[0], d.split(".")[0]) for m, ds in graph.items() for d in ds}
    return {(a, b) for a, b in edges if a < b and (b, a) in edges}


def is_service(name: str) -> bool:
    parts = name.split(".")
    return parts[0] == "core" or any(p in ("services", "selectors") for p in parts[1:])


def is_api_part(part: str) -> bool:
    """``views``, ``chat_views``, ``api``, ``jobs_api``, ``api_urls``, ``api_schema``."""
    return "views" in part or part == "api" or part.endswith("_api") or part.startswith("api_")


def api_imports_of_services(root: Path = ROOT) -> list[str]:
    wrong = []
    for name, path in project_modules(root).items():
        if not is_service(name):
            continue
        for imported, line, _ in imports(path):
            if imported.startswith(API_LAYER) or any(map(is_api_part, imported.split("."))):
                wrong.append(f"{name}:{line} imports {imported}")
    return sorted(wrong)


def core_imports_of_apps(root: Path = ROOT) -> list[str]:
    modules = project_modules(root)
    return sorted(
        {
            f"{name}:{line}"
            for name, path in modules.items()
            if name.split(".")[0] == "core"
            for imported, line, _ in imports(path)
            if (_resolve(imported, modules) or "core").split(".")[0] != "core"
        }
    )


def packages_imported_by(package: str, root: Path = ROOT) -> set[str]:
    """The project's packages that ``package`` imports, inside functions too."""
    modules = project_modules(root)
    return {
        target.split(".")[0]
        for name, path in modules.items()
        if name.split(".")[0] == package
        for imported, _, _ in imports(path)
        if (target := _resolve(imported, modules))
    } - {package}


def unexplained_function_imports(root: Path = ROOT) -> list[str]:
    """Imports of the project's modules inside a function without a comment (on the
    line or the one above) saying why they cannot be at the top."""
    modules = project_modules(root)
    wrong = []
    for name, path in modules.items():
        lines = path.read_text().splitlines()
        for imported, line, in_function in imports(path):
            if not in_function or not _resolve(imported, modules):
                continue
            if "#" not in lines[line - 1] and not lines[line - 2].strip().startswith("#"):
                wrong.append(f"{name}:{line}")
    return sorted(set(wrong))


def test_no_module_of_the_project_imports_itself_through_others():
    assert cycles(import_graph()) == []


def test_no_two_packages_import_each_other():
    assert app_pairs(import_graph()) == set()


def test_sail_is_transport_and_imports_no_app():
    """The apps register their handlers and answers into sail.registry; the bridge finds
    them (autodiscover), never by an import of its own."""
    assert packages_imported_by("sail") <= {"core"}


def test_services_selectors_and_core_never_import_the_api_layer():
    assert api_imports_of_services() == []


def test_core_imports_no_app():
    assert core_imports_of_apps() == []


def test_an_import_inside_a_function_says_why():
    assert unexplained_function_imports() == []


# --- the checks catch what they are for ------------------------------------------------
@pytest.fixture
def tree(tmp_path: Path):
    """A project of two apps to break."""

    def write(files: dict[str, str]) -> Path:
        for package in PACKAGES:
            (tmp_path / package).mkdir(exist_ok=True)
            (tmp_path / package / "__init__.py").write_text("")
        for name, text in files.items():
            (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / name).write_text(text)
        return tmp_path

    return write


def test_a_cycle_between_two_modules_is_caught(tree):
    root = tree({"compute/a.py": "from compute import b\n", "compute/b.py": "import compute.a\n"})
    assert cycles(import_graph(root)) == [["compute.a", "compute.b"]]


def test_a_cycle_through_an_import_for_type_checkers_only_is_not_one(tree):
    root = tree(
        {
            "compute/a.py": "from compute import b\n",
            "compute/b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import compute.a\n",
        }
    )
    assert cycles(import_graph(root)) == []


def test_two_apps_importing_each_other_are_caught(tree):
    root = tree(
        {
            "compute/a.py": "import billing.b\n",
            "billing/b.py": "import compute.c\n",
            "compute/c.py": "",
        }
    )
    assert app_pairs(import_graph(root)) == {("billing", "compute")}


def test_sail_importing_an_app_even_inside_a_function_is_caught(tree):
    root = tree(
        {
            "sail/bridge.py": "import core.tx\n\n\ndef f():\n    # why\n    from pairing import x\n",
            "pairing/x.py": "",
            "core/tx.py": "",
        }
    )
    assert packages_imported_by("sail", root) == {"core", "pairing"}


def test_a_service_importing_the_api_layer_is_caught(tree):
    root = tree(
        {
            "compute/services/jobs.py": "def f():\n    # why\n    from portal.api import errors\n",
            "billing/selectors.py": "from rest_framework import serializers\n",
            "pairing/services.py": "from pairing.views import pair\n",
            "pairing/views.py": "",
        }
    )
    assert api_imports_of_services(root) == [
        "billing.selectors:1 imports rest_framework",
        "billing.selectors:1 imports rest_framework.serializers",
        "compute.services.jobs:3 imports portal.api",
        "compute.services.jobs:3 imports portal.api.errors",
        "pairing.services:1 imports pairing.views",
        "pairing.services:1 imports pairing.views.pair",
    ]


def test_core_importing_an_app_is_caught(tree):
    root = tree({"core/tx.py": "from compute.models import Job\n", "compute/models.py": ""})
    assert core_imports_of_apps(root) == ["core.tx:1"]


def test_an_unexplained_import_in_a_function_is_caught(tree):
    root = tree(
        {
            "compute/a.py": "def f():\n    from compute import b\n\n\ndef g():\n    # Celery: b imports this module\n    from compute import b\n",
            "compute/b.py": "",
        }
    )
    assert unexplained_function_imports(root) == ["compute.a:2"]
