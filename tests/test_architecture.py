"""The rules the code promises to keep, checked on its source: family knowledge stays in
babygpt/models/, LoRA is asked about and not guessed, the model files stay plain, functions stay short."""

import ast
from pathlib import Path

import pytest

from babygpt.models import FAMILIES

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "babygpt"
MODELS = PACKAGE / "models"
OUTSIDE_MODELS = sorted(p for p in PACKAGE.rglob("*.py") if MODELS not in p.parents)
FAMILY_NAMES = set(FAMILIES)
FAMILY_MODULES = {f"models.{name}" for name in FAMILY_NAMES}


def tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def family_strings(node: ast.AST) -> list[str]:
    """Family names spelled as string constants in ``node`` or in a tuple, list or set it is."""
    items = node.elts if isinstance(node, (ast.Tuple, ast.List, ast.Set)) else [node]
    return [item.value for item in items if isinstance(item, ast.Constant) and item.value in FAMILY_NAMES]


def family_checks(path: Path) -> list[str]:
    """Where a module outside babygpt/models/ asks which family it holds."""
    found = []
    for node in ast.walk(tree(path)):
        where = f"{path.name}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Compare):
            for side in (node.left, *node.comparators):
                found += [f"{where} compares with {name!r}" for name in family_strings(side)]
        elif isinstance(node, ast.Dict):
            found += [f"{where} keys a dict by {name!r}" for key in node.keys if key for name in family_strings(key)]
        elif isinstance(node, ast.ImportFrom) and node.module:
            module = node.module.removeprefix("babygpt.")
            if module in FAMILY_MODULES or (module == "models" and {a.name for a in node.names} & FAMILY_NAMES):
                found.append(f"{where} imports a family's own module ({module})")
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("isinstance", "type"):
            names = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
            classes = {c.__name__ for f in FAMILIES.values() for c in (f.config_class, f.model_class)}
            found += [f"{where} tests the type {name}" for name in names & classes]
    return found


def test_the_rule_catches_what_it_is_meant_to_catch(tmp_path):
    planted = tmp_path / "planted.py"
    planted.write_text(
        "from .models.gpt import GPTConfig\n"
        "if family == 'gpt': pass\n"
        "if config['model']['family'] not in ('bigram', 'llama'): pass\n"
        "SITES = {'llama': None}\n"
        "ok = isinstance(config, GPTConfig)\n"
    )
    found = family_checks(planted)
    assert {line.split(":")[1].split()[0] for line in found} == {"1", "2", "3", "4", "5"}, found


def test_no_module_outside_the_models_folder_asks_which_family_it_holds():
    found = [line for path in OUTSIDE_MODELS for line in family_checks(path)]
    assert not found, "\n".join(found)


def test_lora_is_asked_about_never_guessed_with_hasattr():
    found = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(tree(path)):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("hasattr",
                                                                                 "getattr") and len(node.args) > 1:
                name = node.args[1]
                if isinstance(name, ast.Constant) and "lora" in str(name.value).lower():
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not found, found


def test_return_attention_is_gone():
    assert not [p for p in PACKAGE.rglob("*.py") if "return_attention" in p.read_text(encoding="utf-8")]


def test_the_model_files_call_no_private_torch_op_and_use_plain_linear():
    found = []
    for path in MODELS.glob("*.py"):
        for node in ast.walk(tree(path)):
            if isinstance(node, ast.Attribute):
                chain = ast.unparse(node)
                if chain.startswith("torch.") and any(part.startswith("_") for part in chain.split(".")[1:]):
                    found.append(f"{path.name}:{node.lineno} {chain}")
            if isinstance(node, ast.Call) and ast.unparse(node.func).startswith("torch.ops."):
                found.append(f"{path.name}:{node.lineno} calls {ast.unparse(node.func)}")
            if isinstance(node, ast.ClassDef) and any(ast.unparse(b) in ("nn.Linear",
                                                                         "torch.nn.Linear") for b in node.bases):
                found.append(f"{path.name}:{node.lineno} subclasses nn.Linear")
    assert not found, found


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_function_is_longer_than_60_lines(path):
    long = [f"{node.name}: {node.end_lineno - node.lineno + 1} lines" for node in ast.walk(tree(path))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > 60]
    assert not long, long
