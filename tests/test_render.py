"""Values reach HCL and shells only through quoting filters; real packer reads them back."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from bakehouse.errors import TemplateError
from bakehouse.render import Templates

HOSTILE = [
    'plain',
    'a "quoted" word',
    "it's",
    "${env.HOME} and %{ if true }x%{ endif }",
    "$(touch /tmp/bakehouse-pwned) `touch /tmp/bakehouse-pwned`",
    "two\nlines\tand a tab \\ backslash",
    "ünïcode ☃",
]

TEMPLATE = """\
source "null" "x" {
  communicator = "none"
}
build {
  sources = ["source.null.x"]
  provisioner "shell-local" {
    environment_vars = [{{ ("VALUE=" ~ value) | hcl }}]
    inline = [
      {{ ("printf '%s' \\"$VALUE\\" > " ~ (out ~ ".env") | shell) | hcl }},
      {{ ("printf '%s' " ~ (value | shell) ~ " > " ~ (out ~ ".arg") | shell) | hcl }},
    ]
  }
}
"""


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_values_arrive_verbatim_through_real_packer(tmp_path: Path, value: str) -> None:
    (tmp_path / "t.pkr.hcl.j2").write_text(TEMPLATE)
    out = tmp_path / "out"
    rendered = Templates(tmp_path).render("t.pkr.hcl.j2", {"value": value, "out": str(out)})
    (tmp_path / "t.pkr.hcl").write_text(rendered)
    result = subprocess.run(["packer", "build", "-color=false", "t.pkr.hcl"], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert Path(f"{out}.arg").read_text() == value
    assert Path(f"{out}.env").read_text() == value
    assert not Path("/tmp/bakehouse-pwned").exists()


def test_an_undefined_variable_is_one_line_naming_the_template(tmp_path: Path) -> None:
    (tmp_path / "t.j2").write_text("x = {{ vars.region | hcl }}\n")
    with pytest.raises(TemplateError, match=r"^templates/t\.j2: undefined template value: 'dict object' has no attribute 'region'"):
        Templates(tmp_path).render("t.j2", {"vars": {}})


def test_input_files_follow_includes_and_file_calls(tmp_path: Path) -> None:
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "a.sh").write_text("echo a\n")
    (tmp_path / "part.j2").write_text('script = {{ file("scripts/a.sh") | hcl }}\n')
    (tmp_path / "main.j2").write_text('{% include "part.j2" %}\n')
    assert sorted(Templates(tmp_path).input_files("main.j2")) == ["main.j2", "part.j2", "scripts/a.sh"]


def test_a_computed_file_path_is_refused(tmp_path: Path) -> None:
    (tmp_path / "main.j2").write_text('{{ file("scripts/" ~ name) }}\n')
    with pytest.raises(TemplateError, match="file\\(\\) takes one literal path"):
        Templates(tmp_path).input_files("main.j2")
