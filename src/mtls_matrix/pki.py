"""The private PKI of one run, built fresh with `cryptography`.

A root CA, an intermediate CA, an unrelated second CA, and one leaf per entry of LEAVES: the
good server and client leaves and every defective certificate a scenario names. Validity is
relative to the run's "now", so nothing rots. Keys are written 0600 into a private (0700) temp
directory that `close()` removes; nothing here is ever written into a report.

Every temp directory of a run that may hold a key (this PKI, a browser's NSS database, a proxy's
files) is a `private_dir`: it records the process that owns it, is removed when that process
exits, and, when the process could not (SIGKILL, the OOM killer), by the `sweep` the next run
starts with.
"""

from __future__ import annotations

import atexit
import datetime as dt
import hashlib
import ipaddress
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CLIENT_CN = "mtls-matrix-client"
SERVER_HOST = "localhost"
SERVER_IP = "127.0.0.1"
KEY_TYPES = ("ecdsa", "rsa", "ed25519")


OWNER_FILE = ".owner"  # in a private dir made by an older mtls-matrix: the identity of the process that owned it
_owned: set[Path] = set()
# a forked child (the fork server, a worker, a client process) owns none of its parent's dirs: its exit
# must not remove them
os.register_at_fork(after_in_child=_owned.clear)


def _identity(pid: int) -> str | None:
    """'PID START' (its start time in clock ticks since boot: a reused pid has another), or None
    for a process that is gone or a zombie."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] in ("Z", "X") else f"{pid} {fields[19]}"


def gone(pid: int) -> bool:
    """The process has ended (or only its exit status is left to collect)."""
    return _identity(pid) is None


def private_dir(kind: str) -> Path:
    """A new 0700 temp dir `mtls-matrix-KIND-PID.START-*` owned by this process (see the module's doc). The
    owner is in the name, made in one step with the dir: a process killed right after leaves no dir whose
    owner a sweep cannot tell."""
    pid, start = (_identity(os.getpid()) or f"{os.getpid()} 0").split()
    path = Path(tempfile.mkdtemp(prefix=f"mtls-matrix-{kind}-{pid}.{start}-"))
    _owned.add(path)
    return path


_OWNER_IN_NAME = re.compile(r"-(\d+)\.(\d+)-[^-]*\Z")


@atexit.register
def remove_owned() -> None:
    """Remove this process's private dirs: at exit, or when a signal stops the run."""
    for path in list(_owned):
        shutil.rmtree(path, ignore_errors=True)
        _owned.discard(path)


def sweep() -> list[Path]:
    """Remove the private dirs (of this user, in the temp dir) whose owning process is gone."""
    removed = []
    for path in Path(tempfile.gettempdir()).glob("mtls-matrix-*"):
        try:
            if path.is_symlink() or not path.is_dir() or path.stat().st_uid != os.getuid():
                continue
            named = _OWNER_IN_NAME.search(path.name)
            owner = list(named.groups()) if named else (path / OWNER_FILE).read_text().split()
        except OSError:
            continue  # not a private dir (no owner recorded): not ours to judge
        if len(owner) == 2 and owner[0].isdigit() and _identity(int(owner[0])) != " ".join(owner):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


@dataclass(frozen=True)
class LeafSpec:
    """One leaf certificate; `defect` is what `openssl verify` must say about it (None: valid)."""

    role: str  # "server" or "client": sets the default SAN and EKU
    key: str = "ecdsa"
    issuer: str = "root"  # root | intermediate | other | self
    send_chain: bool = True  # for intermediate-issued leaves: the chain file includes the intermediate
    validity: str = "valid"  # valid | expired | not-yet-valid
    eku: str | None = None  # override: "server" or "client"
    san: bool = True  # False: CN only (server-cn-only)
    dns: str = SERVER_HOST
    revoked: bool = False
    defect: str | None = None
    # the files a client is configured with are broken, the certificate itself is fine: cert-missing (the
    # chain path names no file), key-missing, key-unreadable (the key path is a directory: the run is
    # root, whom no file mode stops), key-mismatch (the key of another certificate)
    broken: str | None = None


LEAVES: dict[str, LeafSpec] = {
    "server": LeafSpec("server"),
    "client": LeafSpec("client"),
    "server-rsa": LeafSpec("server", key="rsa"),
    "client-rsa": LeafSpec("client", key="rsa"),
    "server-ed25519": LeafSpec("server", key="ed25519"),
    "client-ed25519": LeafSpec("client", key="ed25519"),
    "server-chain": LeafSpec("server", issuer="intermediate"),
    "client-chain": LeafSpec("client", issuer="intermediate"),
    "client-untrusted-ca": LeafSpec("client", issuer="other", defect="unable to get local issuer certificate"),
    "client-expired": LeafSpec("client", validity="expired", defect="certificate has expired"),
    "client-not-yet-valid": LeafSpec("client", validity="not-yet-valid", defect="certificate is not yet valid"),
    "client-wrong-eku": LeafSpec("client", eku="server", defect="unsuitable certificate purpose"),
    "client-self-signed": LeafSpec("client", issuer="self", defect="self-signed certificate"),
    "client-revoked": LeafSpec("client", revoked=True, defect="certificate revoked"),
    "server-untrusted-ca": LeafSpec("server", issuer="other", defect="unable to get local issuer certificate"),
    "server-expired": LeafSpec("server", validity="expired", defect="certificate has expired"),
    "server-wrong-host": LeafSpec("server", dns="wrong-host.invalid", defect="hostname mismatch"),
    # OpenSSL's CLI still falls back to the CN; RFC 6125 clients (Python's ssl) must not.
    "server-cn-only": LeafSpec("server", san=False, defect="no subjectAltName"),
    "server-wrong-eku": LeafSpec("server", eku="client", defect="unsuitable certificate purpose"),
    "server-self-signed": LeafSpec("server", issuer="self", defect="self-signed certificate"),
    "server-missing-intermediate": LeafSpec(
        "server", issuer="intermediate", send_chain=False, defect="unable to get local issuer certificate"
    ),
    # issued under two intermediates (root -> A -> B -> leaf); the chain file lists them leaf, A, B instead
    # of leaf, B, A: TLS 1.3 (RFC 8446 section 4.4.2) lets a client build the path from an unordered list
    "server-chain-disordered": LeafSpec("server", issuer="sub-intermediate"),
    "client-cert-missing": LeafSpec("client", broken="cert-missing"),
    "client-key-missing": LeafSpec("client", broken="key-missing"),
    "client-key-unreadable": LeafSpec("client", broken="key-unreadable"),
    "client-key-mismatch": LeafSpec("client", broken="key-mismatch"),
}
BROKEN_FILES = ("cert-missing", "key-missing", "key-unreadable", "key-mismatch")
# the leaf whose key a key-mismatch credential names instead of its own
MISMATCHED_KEY_OF = "client-chain"  # same key type: OpenSSL says "key values mismatch"
# The process environment that points a library at another CA bundle (the `environment` scenarios): each
# variable a Python or Node TLS stack reads, and whether it names a file or a directory
CA_ENVIRONMENT = {
    "SSL_CERT_FILE": "file", "SSL_CERT_DIR": "dir", "REQUESTS_CA_BUNDLE": "file", "CURL_CA_BUNDLE": "file",
    "WEBSOCKET_CLIENT_CA_BUNDLE": "file", "NODE_EXTRA_CA_CERTS": "file",
}


@dataclass(frozen=True)
class Credential:
    """Paths a peer is configured with. `chain` is what the peer sends: leaf plus intermediates."""

    name: str
    cert: Path
    chain: Path
    key: Path
    subject_cn: str
    spec: LeafSpec


def _new_key(kind: str):
    if kind == "ecdsa":
        return ec.generate_private_key(ec.SECP256R1())
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    raise ValueError(f"unknown key type {kind!r}; valid: {', '.join(KEY_TYPES)}")


def _sign_hash(key):
    return None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()


@dataclass
class _Authority:
    name: str
    key: object
    cert: x509.Certificate
    revoked: list[int] = field(default_factory=list)


class PKI:
    """Everything one run trusts and presents. Use as a context manager, or call close()."""

    def __init__(self, now: dt.datetime | None = None, directory: str | None = None,
                 leaves: tuple[str, ...] | None = None):
        """`leaves`: only these of LEAVES (a quick check that needs two needs no RSA keys); None: all."""
        self.now = now or dt.datetime.now(dt.timezone.utc)
        if directory is None:
            sweep()  # a run starts by removing what killed runs left behind
        self.dir = Path(directory) if directory else private_dir("pki")
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.dir, 0o700)
        atexit.register(self.close)
        self._root = self._authority("mtls-matrix root CA", issuer=None)
        self._intermediate = self._authority("mtls-matrix intermediate CA", issuer=self._root, path_length=0)
        self._other = self._authority("unrelated CA", issuer=None)
        self._upper = self._authority("mtls-matrix intermediate CA A", issuer=self._root, path_length=1)
        self._lower = self._authority("mtls-matrix intermediate CA B", issuer=self._upper, path_length=0)
        self.root = self._write_pem("root-ca.pem", [self._root.cert])
        self.intermediate = self._write_pem("intermediate-ca.pem", [self._intermediate.cert])
        self.other_ca = self._write_pem("other-ca.pem", [self._other.cert])
        self.other_ca_dir = self._hashed_dir("other-ca.d", self._other.cert)
        self.credentials = {name: self._leaf(name, spec) for name, spec in LEAVES.items()
                            if leaves is None or name in leaves}
        self.crl = self._write_crl()
        self.fingerprint = hashlib.sha256(self._root.cert.public_bytes(serialization.Encoding.DER)).hexdigest()

    @classmethod
    def open(cls, directory: str | Path) -> PKI:
        """The PKI another process of this run built (pytest-xdist workers share the controller's
        CA, so a run has one CA). The opener does not own the directory: close() leaves it."""
        pki = cls.__new__(cls)
        pki.dir = Path(directory)
        pki.root, pki.intermediate = pki.dir / "root-ca.pem", pki.dir / "intermediate-ca.pem"
        pki.other_ca, pki.crl = pki.dir / "other-ca.pem", pki.dir / "crl.pem"
        pki.other_ca_dir = pki.dir / "other-ca.d"
        pki.credentials = {name: pki._credential(name, spec) for name, spec in LEAVES.items()}
        der = x509.load_pem_x509_certificate(pki.root.read_bytes()).public_bytes(serialization.Encoding.DER)
        pki.fingerprint = hashlib.sha256(der).hexdigest()
        pki.close = lambda: None
        return pki

    def _credential(self, name: str, spec: LeafSpec) -> Credential:
        """`chain` and `key` are what a peer is configured with; a broken spec makes one of them wrong
        (the certificate itself, `cert`, is always written)."""
        chain, key = self.dir / f"{name}.chain.pem", self.dir / f"{name}.key.pem"
        if spec.broken == "cert-missing":
            chain = self.dir / f"{name}.absent.pem"
        elif spec.broken == "key-missing":
            key = self.dir / f"{name}.absent-key.pem"
        elif spec.broken == "key-unreadable":
            key = self.dir / f"{name}.key.d"
        elif spec.broken == "key-mismatch":
            key = self.dir / f"{MISMATCHED_KEY_OF}.key.pem"
        return Credential(
            name=name,
            cert=self.dir / f"{name}.cert.pem",
            chain=chain,
            key=key,
            subject_cn=SERVER_HOST if spec.role == "server" else CLIENT_CN,
            spec=spec,
        )

    def other_ca_environment(self) -> dict[str, str]:
        """CA_ENVIRONMENT, every variable pointing at the unrelated CA (a file, or a hashed directory)."""
        return {name: str(self.other_ca if kind == "file" else self.other_ca_dir)
                for name, kind in CA_ENVIRONMENT.items()}

    def __enter__(self) -> PKI:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    def __getitem__(self, name: str) -> Credential:
        try:
            return self.credentials[name]
        except KeyError:
            raise KeyError(f"no certificate named {name!r}; valid: {', '.join(self.credentials)}") from None

    # -- building ------------------------------------------------------------------------------

    def _validity(self, validity: str) -> tuple[dt.datetime, dt.datetime]:
        day = dt.timedelta(days=1)
        return {
            "valid": (self.now - day, self.now + 30 * day),
            "expired": (self.now - 30 * day, self.now - day),
            "not-yet-valid": (self.now + day, self.now + 30 * day),
        }[validity]

    def _authority(self, cn: str, issuer: _Authority | None, path_length: int | None = None) -> _Authority:
        key = _new_key("ecdsa")
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
        ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
        builder = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(issuer.cert.subject if issuer else name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(self.now - dt.timedelta(days=2))
            .not_valid_after(self.now + dt.timedelta(days=60))
            .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
            )
            .add_extension(ski, critical=False)
        )
        if issuer:
            builder = builder.add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), critical=False
            )
        signer = issuer.key if issuer else key
        return _Authority(cn, key, builder.sign(signer, _sign_hash(signer)))

    def _leaf(self, name: str, spec: LeafSpec) -> Credential:
        key = _new_key(spec.key)
        cn = SERVER_HOST if spec.role == "server" else CLIENT_CN
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn),
                             x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, name)])
        issuer = {"root": self._root, "intermediate": self._intermediate, "sub-intermediate": self._lower,
                  "other": self._other, "self": None}[spec.issuer]
        not_before, not_after = self._validity(spec.validity)
        eku = ExtendedKeyUsageOID.SERVER_AUTH if (spec.eku or spec.role) == "server" else ExtendedKeyUsageOID.CLIENT_AUTH
        signature_key_usage = not isinstance(key, rsa.RSAPrivateKey)  # RSA leaves also need keyEncipherment
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer.cert.subject if issuer else subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(True, False, not signature_key_usage, False, False, False, False, False, False),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([eku]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        )
        if spec.role == "server" and spec.san:
            sans = [x509.DNSName(spec.dns)]
            if spec.dns == SERVER_HOST:
                sans.append(x509.IPAddress(ipaddress.ip_address(SERVER_IP)))
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        if issuer:
            builder = builder.add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), critical=False
            )
        signer = issuer.key if issuer else key
        cert = builder.sign(signer, _sign_hash(signer))
        if spec.revoked:
            issuer.revoked.append(cert.serial_number)
        chain = [cert] + ([self._intermediate.cert] if spec.issuer == "intermediate" and spec.send_chain else [])
        if spec.issuer == "sub-intermediate":
            chain = [cert, self._upper.cert, self._lower.cert]  # the issuer's issuer first: the wrong order
        credential = self._credential(name, spec)
        self._write_pem(credential.cert.name, [cert])
        if spec.broken != "cert-missing":
            self._write_pem(credential.chain.name, chain)
        if spec.broken == "key-unreadable":
            credential.key.mkdir(mode=0o700)
        elif spec.broken not in ("key-missing", "key-mismatch"):
            self._write_key(credential.key.name, key)
        return credential

    def _write_crl(self) -> Path:
        """CRLs of both issuing CAs, so CRL-checking peers find one for every leaf they meet."""
        pems = []
        for authority in (self._root, self._intermediate):
            builder = (
                x509.CertificateRevocationListBuilder()
                .issuer_name(authority.cert.subject)
                .last_update(self.now - dt.timedelta(hours=1))
                .next_update(self.now + dt.timedelta(days=7))
            )
            for serial in authority.revoked:
                builder = builder.add_revoked_certificate(
                    x509.RevokedCertificateBuilder()
                    .serial_number(serial)
                    .revocation_date(self.now - dt.timedelta(hours=1))
                    .build()
                )
            pems.append(builder.sign(authority.key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))
        path = self.dir / "crl.pem"
        path.write_bytes(b"".join(pems))
        return path

    def _hashed_dir(self, dirname: str, cert: x509.Certificate) -> Path:
        """A CA directory as SSL_CERT_DIR names one: the certificate under its OpenSSL subject hash
        (`openssl rehash`'s HASH.0). The hash comes from the openssl CLI, the one tool that computes it;
        without it the directory stays empty, so the variable points at no CA at all."""
        path = self.dir / dirname
        path.mkdir(mode=0o700)
        pem = cert.public_bytes(serialization.Encoding.PEM)
        try:
            found = subprocess.run(["openssl", "x509", "-noout", "-subject_hash"], input=pem, capture_output=True,
                                   timeout=30)
        except OSError:
            return path
        if found.returncode == 0 and found.stdout.strip():
            (path / f"{found.stdout.decode().strip()}.0").write_bytes(pem)
        return path

    def _write_pem(self, filename: str, certs: list[x509.Certificate]) -> Path:
        path = self.dir / filename
        path.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs))
        return path

    def _write_key(self, filename: str, key) -> Path:
        path = self.dir / filename
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(
                key.private_bytes(
                    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
                )
            )
        return path
