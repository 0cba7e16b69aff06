"""Views and the API launch no jobs (issue 14): only app/tasks.py calls `dispatch`,
and only it, the application factory (whose `init_celery` import also registers
the event handlers) and Celery's entry point app.worker import app.tasks. Everything else records events
(app/core/events.py), whose handlers start the work after the commit.

Modules are read with `ast`, never imported, with the import scan of
test_import_cycles (top level, in functions, relative, `import_module`)."""
import ast
from pathlib import Path

from tests.unit.test_import_cycles import ROOT, imports_of, module_files


def job_launches(root: Path, package: str = "app") -> list[str]:
    """Each place, outside tasks, that imports the tasks module or calls `dispatch`."""
    tasks = f"{package}.tasks"
    may_import = {tasks, package, f"{package}.worker"}  # itself; those that start Celery
    modules = module_files(root, package)
    found = []
    for name, path in modules.items():
        if name == tasks:
            continue
        where = path.relative_to(root)
        if name not in may_import:
            found += [f"{where}:{line} imports {tasks}"
                      for line in sorted(set(imports_of(name, path, modules).get(tasks, [])))]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Call) and (
                    (isinstance(node.func, ast.Name) and node.func.id == "dispatch")
                    or (isinstance(node.func, ast.Attribute) and node.func.attr == "dispatch")):
                found.append(f"{where}:{node.lineno} calls dispatch")
    return sorted(found)


def test_only_tasks_launch_jobs():
    found = job_launches(ROOT)
    assert not found, ("Jobs are launched by event handlers (app/tasks.py), after the "
                       "commit; record an event in the operation instead:\n  "
                       + "\n  ".join(found))


def test_the_scan_sees_each_way_of_launching(tmp_path):
    sources = {
        "pkg/__init__.py": "def create_app():\n    from pkg.tasks import init_celery\n",
        "pkg/tasks.py": "def dispatch(task, *args):\n    pass\n\ndispatch(print)\n",
        "pkg/views.py": "from pkg.tasks import dispatch\n\ndispatch(1)\n",
        "pkg/area/__init__.py": "",
        "pkg/area/api.py": "def f():\n    from .. import tasks\n    tasks.dispatch(2)\n",
        "pkg/core/__init__.py": "",
        "pkg/core/events.py": "def record(event):\n    pass\n",
        "pkg/ops.py": "from pkg.core import events\n\nevents.record(3)\n",
    }
    for name, text in sources.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert job_launches(tmp_path, "pkg") == [
        "pkg/area/api.py:2 imports pkg.tasks", "pkg/area/api.py:3 calls dispatch",
        "pkg/views.py:1 imports pkg.tasks", "pkg/views.py:3 calls dispatch"]
