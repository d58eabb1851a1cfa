"""The cluster's TLS material: made here (`make_certificates`, which ``lid-dask certs`` runs) and
handed to Dask as files, from a folder or from environment variables holding PEM text.

Each certificate names its role in its subject (``O=lid-dask, OU=scheduler|worker|client``), which
the `lid_dask.security` preload checks on every connection, and may be used only as that role needs
(extendedKeyUsage):

- scheduler: serverAuth + clientAuth (it listens, and connects to workers and nannies);
- worker: serverAuth + clientAuth (its nanny and worker listen, and it connects to the scheduler);
- client: clientAuth only (it connects; it can never serve as a scheduler or a worker).

Only the scheduler's certificate names hosts (subjectAltName). Whoever holds ``ca.key`` can make a
certificate for any role: keep it offline.

SaladCloud gives a container only environment variables (secrets included), so `role_files` also
takes the PEM text from ``LID_DASK_TLS_CA``, ``LID_DASK_TLS_CERT`` and ``LID_DASK_TLS_KEY``: Dask
reads certificates from files, and reads them again for every new connection, so the text is
written to a private folder (0700, files 0600) for the life of the process.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from lid_dask.security import ORGANIZATION

ENV_VARIABLES = ("LID_DASK_TLS_CA", "LID_DASK_TLS_CERT", "LID_DASK_TLS_KEY")
DAYS = 825  # the longest-lived TLS server certificate Apple platforms accept
SERVE_AND_CONNECT = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
USAGES = {"scheduler": SERVE_AND_CONNECT, "worker": SERVE_AND_CONNECT, "client": [ExtendedKeyUsageOID.CLIENT_AUTH]}


def role_file_names(role: str) -> tuple[str, str, str]:
    """CA certificate, certificate and key of `role` in a folder made by `make_certificates`."""
    return "ca.pem", f"{role}.pem", f"{role}.key"


def make_certificates(folder: Path, hosts: Iterable[str] = ()) -> None:
    """A private CA (ca.pem, ca.key) and a key and certificate per role ({role}.pem, {role}.key)
    in `folder`; keys are 0600. `hosts` (names or IP addresses) join localhost and 127.0.0.1 in the
    scheduler's certificate. Refuses to replace any of them: a new CA would lock out every worker."""
    names = ["ca.pem", "ca.key", *(f"{role}.{ext}" for role in USAGES for ext in ("pem", "key"))]
    taken = [name for name in names if (folder / name).exists()]
    if taken:
        raise FileExistsError(f"{folder} already holds {', '.join(taken)}: keep them, or choose another folder")
    folder.mkdir(parents=True, exist_ok=True)
    # An hour back: a node whose clock is a little behind still accepts a certificate made just now.
    start = dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
                         x509.NameAttribute(NameOID.COMMON_NAME, "lid-dask CA")])
    ca = (_builder(ca_name, ca_name, ca_key.public_key(), start)
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(_key_usage(key_cert_sign=True, crl_sign=True), critical=True)
          .sign(ca_key, hashes.SHA256()))
    _write_key(folder / "ca.key", ca_key)
    _write(folder / "ca.pem", _pem(ca), 0o644)
    for role, usages in USAGES.items():
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
                             x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role),
                             x509.NameAttribute(NameOID.COMMON_NAME, f"lid-dask-{role}")])
        builder = (_builder(subject, ca_name, key.public_key(), start)
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(_key_usage(digital_signature=True), critical=True)
                   .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                                  critical=False))
        if role == "scheduler":
            builder = builder.add_extension(x509.SubjectAlternativeName(
                [_general_name(host) for host in dict.fromkeys([*hosts, "localhost", "127.0.0.1"])]), critical=False)
        _write_key(folder / f"{role}.key", key)
        _write(folder / f"{role}.pem", _pem(builder.sign(ca_key, hashes.SHA256())), 0o644)


def _builder(subject: x509.Name, issuer: x509.Name, public_key, start: dt.datetime) -> x509.CertificateBuilder:
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(start + dt.timedelta(days=DAYS))
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False))


def _key_usage(**usages: bool) -> x509.KeyUsage:
    names = ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment", "key_agreement",
             "key_cert_sign", "crl_sign", "encipher_only", "decipher_only")
    return x509.KeyUsage(**{name: usages.get(name, False) for name in names})


def _general_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> Path:
    return _write(path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()), 0o600)


def _write(path: Path, data: bytes, mode: int) -> Path:
    """A new file with `mode` from its first byte (a key is never readable by others, even briefly)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(descriptor, "wb") as out:
        os.fchmod(out.fileno(), mode)  # whatever the umask
        out.write(data)
    return path


def environment_form(folder: Path) -> str:
    """``LID_DASK_TLS_*=PEM`` lines for the worker's files in `folder`, newlines written as ``\\n``: one
    line per variable pastes into a secret's single-line field, a JSON string or an env file."""
    lines = []
    for variable, name in zip(ENV_VARIABLES, role_file_names("worker")):
        pem = (folder / name).read_text().replace("\n", "\\n")
        lines.append(f"{variable}={pem}\n")
    return "".join(lines)


@contextlib.contextmanager
def role_files(role: str, folder: str | None) -> Iterator[tuple[Path, Path, Path] | None]:
    """(CA, certificate, key) files of `role` for the life of the ``with`` block.

    From `folder` if given (ca.pem, ROLE.pem, ROLE.key), else from the ``LID_DASK_TLS_*`` variables,
    written to a private temporary folder removed on the way out; None if neither is there. The
    variables are taken out of this process's environment, so the processes it starts (the Dask
    worker that runs tasks) do not inherit the key.
    """
    if folder:
        paths = tuple(Path(folder) / name for name in role_file_names(role))
        missing = [str(path) for path in paths if not path.is_file()]
        if missing:
            raise FileNotFoundError(f"no {', '.join(missing)}: make them with `lid-dask certs {folder}`")
        yield paths
        return
    given = {name: os.environ.pop(name) for name in ENV_VARIABLES if name in os.environ}
    if not given:
        yield None
        return
    missing = [name for name in ENV_VARIABLES if name not in given]
    if missing:
        raise ValueError(f"{', '.join(missing)} not set: give all of {', '.join(ENV_VARIABLES)}, or --certs DIR")
    private = Path(tempfile.mkdtemp(prefix="lid-dask-tls-"))  # 0700
    try:
        paths = tuple(_write(private / name, _pem_text(variable, given[variable]).encode(), 0o600)
                      for variable, name in zip(ENV_VARIABLES, role_file_names(role)))
        yield paths
    finally:
        shutil.rmtree(private, ignore_errors=True)


def _pem_text(variable: str, value: str) -> str:
    """PEM text from a variable, whose newlines may have been written as ``\\n``."""
    text = value if "\n" in value else value.replace("\\n", "\n")
    if "-----BEGIN " not in text:
        raise ValueError(f"{variable} holds no PEM text (-----BEGIN ...)")
    return text
