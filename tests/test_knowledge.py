"""The curated knowledge (matrix/*.toml): what a malformed file says, and the repository's own files."""

from __future__ import annotations

import pytest

from mtls_matrix import knowledge
from tests.conftest import REPO

GOOD = '[[mechanism]]\nid = "cn-fallback"\ntitle = "t"\nreason = "r"\n'


@pytest.mark.parametrize("text, says", [
    ('[[mechanism]\n', "not valid TOML"),
    ('title = "x"\n', "unknown top-level key title"),
    ('[[mechanism]]\nid = "Bad Id"\ntitle = "t"\nreason = "r"\n', "mechanism 1 (Bad Id): id: String should match"),
    (GOOD + 'why = "x"\n', "mechanism 1 (cn-fallback): why: Extra inputs are not permitted"),
    (GOOD + 'links = [{ url = "javascript:alert(1)", status = "open" }]\n', "is not an http(s) link"),
    (GOOD + GOOD, "mechanism 'cn-fallback' is defined twice"),
])
def test_a_malformed_file_is_named_with_its_record_and_problem(tmp_path, text, says):
    (tmp_path / knowledge.MECHANISMS).write_text(text)
    with pytest.raises(ValueError) as raised:
        knowledge.load(tmp_path)
    assert str(tmp_path / knowledge.MECHANISMS) in str(raised.value) and says in str(raised.value)


def test_a_missing_directory_is_an_error_and_missing_files_contribute_nothing(tmp_path):
    with pytest.raises(ValueError, match="no such directory"):
        knowledge.load(tmp_path / "none")
    assert knowledge.load(tmp_path) == knowledge.Knowledge()


def test_the_repositorys_knowledge_loads_and_every_link_is_http():
    found = knowledge.load(REPO / "matrix")
    assert len(found.mechanisms) >= 40 and found.reference.finding
    assert all(link.url.startswith(("https://", "http://")) for m in found.mechanisms for link in m.links)
