from __future__ import annotations

import pytest

from evalharness.errors import TemplateError
from evalharness.prompting.render import render


def test_renders_fields() -> None:
    assert render("Q: {{ q }}\nA:", {"q": "hi"}) == "Q: hi\nA:"


def test_strict_undefined_names_field_and_available() -> None:
    with pytest.raises(TemplateError, match=r"where: 'nope' is undefined \(available fields: q\)"):
        render("{{ nope }}", {"q": 1}, "where")


@pytest.mark.parametrize(
    "attack",
    [
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ q.__class__.__init__.__globals__ }}",
        "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
        "{{ lipsum.__globals__['os'].popen('id').read() }}",
        "{{ self._TemplateReference__context }}",
        "{% for x in range(10**9) %}{% endfor %}",
    ],
)
def test_sandbox_refuses_injection(attack: str) -> None:
    with pytest.raises(TemplateError):
        render(attack, {"q": "x"})


def test_data_is_not_rendered_again() -> None:
    assert render("{{ q }}", {"q": "{{ 7 * 7 }}"}) == "{{ 7 * 7 }}"


def test_syntax_error_is_template_error() -> None:
    with pytest.raises(TemplateError, match="syntax error"):
        render("{{ q ", {"q": 1})
