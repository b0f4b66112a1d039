"""The run's PKI, checked by an independent verifier: the openssl CLI."""

from __future__ import annotations

import stat
import subprocess

import pytest

from mtls_matrix.pki import LEAVES, PKI


@pytest.fixture(scope="module")
def pki():
    with PKI() as built:
        yield built


def openssl_verify(pki: PKI, name: str) -> subprocess.CompletedProcess:
    credential = pki[name]
    spec = credential.spec
    args = ["openssl", "verify", "-CAfile", str(pki.root),
            "-purpose", "sslserver" if spec.role == "server" else "sslclient"]
    if spec.issuer == "intermediate" and spec.send_chain:
        args += ["-untrusted", str(pki.intermediate)]
    elif spec.issuer == "sub-intermediate":  # its chain file holds both intermediates (out of order)
        args += ["-untrusted", str(credential.chain)]
    if spec.revoked:
        args += ["-crl_check", "-CRLfile", str(pki.crl)]
    if spec.role == "server":
        args += ["-verify_hostname", "localhost"]
    return subprocess.run(args + [str(credential.cert)], capture_output=True, text=True)


@pytest.mark.parametrize("name", [n for n, s in LEAVES.items() if s.defect is None])
def test_every_good_certificate_verifies(pki, name):
    result = openssl_verify(pki, name)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", [n for n, s in LEAVES.items() if s.defect and s.san])
def test_every_bad_certificate_fails_for_its_stated_reason(pki, name):
    result = openssl_verify(pki, name)
    assert result.returncode != 0
    assert LEAVES[name].defect in result.stdout + result.stderr


def test_cn_only_certificate_has_no_subject_alt_name(pki):
    """The openssl CLI still falls back to the CN, so it cannot state this defect: check the
    certificate itself, and that the CN is the host (so only CN matching could accept it)."""
    text = subprocess.run(["openssl", "x509", "-noout", "-text", "-in", str(pki["server-cn-only"].cert)],
                          capture_output=True, text=True, check=True).stdout
    assert "Subject Alternative Name" not in text
    assert "CN = localhost" in text


def test_chains_send_the_intermediate_except_the_missing_intermediate_case(pki):
    def count(name):
        return pki[name].chain.read_text().count("BEGIN CERTIFICATE")

    assert count("server-chain") == count("client-chain") == 2
    assert count("server-missing-intermediate") == count("server") == 1


def test_keys_are_private_and_removed_at_close():
    built = PKI()
    assert stat.S_IMODE(built.dir.stat().st_mode) == 0o700
    for credential in built.credentials.values():
        if credential.spec.broken is None:
            assert stat.S_IMODE(credential.key.stat().st_mode) == 0o600
    built.close()
    assert not built.dir.exists()


def test_validity_is_relative_to_the_runs_now(pki):
    from cryptography import x509

    expired = x509.load_pem_x509_certificate(pki["client-expired"].cert.read_bytes())
    future = x509.load_pem_x509_certificate(pki["client-not-yet-valid"].cert.read_bytes())
    assert expired.not_valid_after_utc < pki.now < future.not_valid_before_utc


def test_broken_client_files_are_broken_the_way_their_scenarios_say(pki):
    assert not pki["client-cert-missing"].chain.exists() and pki["client-cert-missing"].key.is_file()
    assert not pki["client-key-missing"].key.exists() and pki["client-key-missing"].chain.is_file()
    assert pki["client-key-unreadable"].key.is_dir()
    mismatch = pki["client-key-mismatch"]
    assert mismatch.key == pki["client-chain"].key and mismatch.chain.is_file()


def test_the_disordered_chain_lists_the_issuers_issuer_first(pki):
    from cryptography import x509

    chain = x509.load_pem_x509_certificates(pki["server-chain-disordered"].chain.read_bytes())
    names = [c.subject.rfc4514_string() for c in chain[1:]]
    assert names == ["CN=mtls-matrix intermediate CA A", "CN=mtls-matrix intermediate CA B"]
    assert chain[0].issuer == chain[2].subject  # the leaf's issuer comes last


def test_the_other_ca_environment_names_files_and_a_hashed_directory(pki):
    env = pki.other_ca_environment()
    assert env["SSL_CERT_FILE"] == env["NODE_EXTRA_CA_CERTS"] == str(pki.other_ca)
    hashed = list(pki.other_ca_dir.iterdir())
    assert [p.suffix for p in hashed] == [".0"] and hashed[0].read_bytes() == pki.other_ca.read_bytes()


def test_a_run_makes_every_certificate_its_scenarios_name():
    """The run's CA makes only the leaves its selected scenarios use (plugin._leaves): any LEAVES name
    anywhere in a scenario (its sides, a forwarded certificate, a reconnect's restart) must be among them."""
    from dataclasses import fields, is_dataclass

    from mtls_matrix.pki import LEAVES
    from mtls_matrix.plugin import _leaves
    from mtls_matrix.scenarios import CATALOGUE

    def named(value) -> set[str]:
        if isinstance(value, str):
            return {value} & set(LEAVES)
        if is_dataclass(value):
            return set().union(*(named(getattr(value, f.name)) for f in fields(value)))
        if isinstance(value, (tuple, list, frozenset, set)):
            return set().union(set(), *(named(v) for v in value))
        return set()

    class Cell:  # what _leaves reads of a selected cell
        def __init__(self, scenario):
            self.scenario = scenario

    for scenario in CATALOGUE:
        assert named(scenario) <= set(_leaves([Cell(scenario)])), scenario.name
