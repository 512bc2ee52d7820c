"""Render Packer templates (Jinja2, StrictUndefined) and find every file a template uses.

Values reach HCL and shells only through filters that quote them:
- `hcl`:   an HCL literal (strings escaped, `${` and `%{` neutralised, lists and maps too);
- `shell`: one shell word (shlex.quote);
- `json`:  a JSON literal.
Scripts are named with `file("scripts/x.sh")` (or `names | map("file")`), which gives packer
an absolute path.

The files that enter a bake's content key are the ones its template, rendered with this
bake's values, actually used: the template, each template it included, and each file() it
called (`render_used`). A script behind `{% if aws.communicator == "ssh" %}` counts for SSH
bakes only. `input_files` is every file a template could reach, for key schema 1: its literal
file() calls; the `file` filter names files from a bake's values (its test scripts), which
schema-1 keys never held.
"""

from __future__ import annotations

import json
import shlex
import threading
from pathlib import Path
from typing import Any

import jinja2
import jinja2.meta
from jinja2 import nodes

from .errors import TemplateError
from .files import sha256_file

FILE_FUNCTION = "file"


def hcl_literal(value: Any) -> str:
    """`value` as an HCL2 expression that evaluates to exactly that value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return json.dumps(value)
    if value is None:
        return "null"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(hcl_literal(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{hcl_literal(str(k))} = {hcl_literal(v)}" for k, v in value.items()) + " }"
    text = json.dumps(str(value), ensure_ascii=False)  # escapes quotes, backslashes, controls
    return text.replace("${", "$${").replace("%{", "%%{")


def shell_word(value: Any) -> str:
    return shlex.quote(str(value))


def json_literal(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


class _Environment(jinja2.Environment):
    """Jinja2's environment, noting each template it is asked for while a render is traced
    (an {% include %} asks for its template each time it runs, and only when it runs)."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.trace = threading.local()

    def get_template(self, name: Any, parent: Any = None, globals: Any = None) -> Any:
        used = getattr(self.trace, "used", None)
        if used is not None and isinstance(name, str):
            used.add(name)
        return super().get_template(name, parent, globals)


class Templates:
    """Templates by name: rendering, and the set of files each template depends on. A name is
    looked up in each directory in turn (the repository's templates/, then the built-in ones),
    for templates, includes and file() alike, so a repository's own file overrides the
    built-in one of the same name wherever it is used."""

    def __init__(self, directories: Path | tuple[Path, ...]) -> None:
        self.directories = (directories,) if isinstance(directories, Path) else tuple(directories)
        self.env = _Environment(
            loader=jinja2.FileSystemLoader([str(directory) for directory in self.directories]),
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=True,
            autoescape=False,
        )
        self.env.filters.update(hcl=hcl_literal, shell=shell_word, json=json_literal)
        # file() is also a filter, so a list of names maps to paths: `tests | map("file")`
        self.env.globals[FILE_FUNCTION] = self.env.filters[FILE_FUNCTION] = self._file_path
        self._hash_cache: dict[Path, str] = {}
        self._inputs_cache: dict[str, dict[str, str]] = {}

    def _file_path(self, name: str) -> str:
        path = self._existing(name, "file()")
        used = getattr(self.env.trace, "used", None)
        if used is not None:
            used.add(name)
        return str(path)

    def render_used(self, template: str, context: dict[str, Any]) -> tuple[str, dict[str, str]]:
        """The rendered text, and the sha256 of each file the render used (by name under
        templates/): the template, the templates it included, the files it named with file()."""
        self.env.trace.used = used = set()
        try:
            text = self.render(template, context)
        finally:
            self.env.trace.used = None
        return text, {name: self._sha256(self._existing(name, "a template")) for name in sorted(used | {template})}

    def _existing(self, name: str, used_by: str) -> Path:
        for directory in self.directories:
            path = (directory / name).resolve()
            if path.is_relative_to(directory.resolve()) and path.is_file():
                return path
        raise TemplateError(f"templates/: {used_by} names '{name}', which is neither under templates/ nor built in")


    def input_files(self, template: str) -> dict[str, str]:
        """sha256 of the template and of every template and file() it can reach (worked out
        once per template and run: many bakes share a template)."""
        if template not in self._inputs_cache:
            self._inputs_cache[template] = self._input_files(template)
        return dict(self._inputs_cache[template])

    def _input_files(self, template: str) -> dict[str, str]:
        found: dict[str, str] = {}
        pending = [template]
        while pending:
            name = pending.pop()
            if name in found:
                continue
            path = self._existing(name, "a template")
            found[name] = self._sha256(path)
            source = path.read_text(encoding="utf-8")
            try:
                tree = self.env.parse(source, name=name, filename=str(path))
            except jinja2.TemplateSyntaxError as error:
                raise TemplateError(f"templates/{name}:{error.lineno}: {error.message}") from None
            pending.extend(self._included(name, tree))
            for file_name in self._files_named(name, tree):
                found[file_name] = self._sha256(self._existing(file_name, f"templates/{name}: file()"))
        return found

    def _included(self, name: str, tree: nodes.Template) -> list[str]:
        included = list(jinja2.meta.find_referenced_templates(tree))
        if None in included:
            raise TemplateError(f"templates/{name}: include/import names must be literal strings")
        return [str(item) for item in included]

    def _files_named(self, name: str, tree: nodes.Template) -> list[str]:
        names = []
        for call in tree.find_all(nodes.Call):
            if isinstance(call.node, nodes.Name) and call.node.name == FILE_FUNCTION:
                if len(call.args) != 1 or not isinstance(call.args[0], nodes.Const):
                    raise TemplateError(
                        f"templates/{name}:{call.lineno}: file() takes one literal path, "
                        "so the content key can include that file"
                    )
                names.append(str(call.args[0].value))
        return names

    def _sha256(self, path: Path) -> str:
        if path not in self._hash_cache:
            self._hash_cache[path] = sha256_file(path)
        return self._hash_cache[path]

    def render(self, template: str, context: dict[str, Any]) -> str:
        try:
            return self.env.get_template(template).render(context)
        except jinja2.UndefinedError as error:
            raise TemplateError(
                f"templates/{template}: undefined template value: {error.message} "
                "(docs/reference/templates.md lists the values a template gets)"
            ) from None
        except jinja2.TemplateSyntaxError as error:
            raise TemplateError(f"templates/{error.name or template}:{error.lineno}: {error.message}") from None
        except jinja2.TemplateNotFound as error:
            raise TemplateError(f"templates/{template}: includes '{error.name}', which does not exist") from None
        except TemplateError:
            raise
        except Exception as error:  # an expression that fails on this bake's values (1/0, a call)
            line = _template_line(error.__traceback__, template)
            raise TemplateError(
                f"templates/{template}{line}: rendering failed: {type(error).__name__}: {error}"
            ) from None


def _template_line(trace: Any, template: str) -> str:
    """':N' for the template line an error came from, when Jinja2's traceback tells it."""
    line = ""
    while trace is not None:
        if trace.tb_frame.f_code.co_filename.endswith(template):
            line = f":{trace.tb_lineno}"
        trace = trace.tb_next
    return line
