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
        assert stat.S_IMODE(credential.key.stat().st_mode) == 0o600
    built.close()
    assert not built.dir.exists()


def test_validity_is_relative_to_the_runs_now(pki):
    from cryptography import x509

    expired = x509.load_pem_x509_certificate(pki["client-expired"].cert.read_bytes())
    future = x509.load_pem_x509_certificate(pki["client-not-yet-valid"].cert.read_bytes())
    assert expired.not_valid_after_utc < pki.now < future.not_valid_before_utc
