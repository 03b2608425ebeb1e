"""The lab CA and the certificates it signs (RAPI, and any other lab service), so clients verify them.

Ganeti's own RAPI certificate has no subjectAltName; the lab installs one valid for
https://MASTER_IP:5080 and for the cluster name. Both files survive repairs (only `down` removes them).
"""

from __future__ import annotations

import re
import secrets
from pathlib import Path

from cookbook_lab import topology
from cookbook_lab.clusterfs import PART, ClusterPaths
from cookbook_lab.common import Lab

CERT_RE = re.compile(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)


def ca_file(paths: ClusterPaths) -> Path:
    """The lab CA certificate: what clients verify RAPI against."""
    return paths.tls_dir / "ca.crt"


def rapi_pem(paths: ClusterPaths) -> Path:
    """Key and certificate of RAPI in one file, the form `gnt-cluster renew-crypto` takes."""
    return paths.tls_dir / "rapi.pem"


def ensure_certificates(lab: Lab, paths: ClusterPaths) -> None:
    """Create the CA and the RAPI certificate when missing."""
    tls = paths.tls_dir
    tls.mkdir(mode=0o700, parents=True, exist_ok=True)
    ca_key = tls / "ca.key"
    if not ca_key.exists() or not ca_file(paths).exists():
        lab.run(PART, [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key),
            "-out", str(ca_file(paths)), "-days", "3650", "-subj", "/CN=cookbook-lab CA",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        ])
        rapi_pem(paths).unlink(missing_ok=True)
    if not rapi_pem(paths).exists():
        issue_rapi_certificate(lab, paths, rapi_pem(paths))


def issue_rapi_certificate(lab: Lab, paths: ClusterPaths, pem_file: Path) -> None:
    """Write to pem_file a new RAPI key and certificate signed by the lab CA (for the master IP and cluster name)."""
    key, cert = issue_certificate(lab, paths, pem_file.with_name(pem_file.stem), topology.CLUSTER_FQDN,
                                  [f"IP:{topology.MASTER_IP}", f"DNS:{topology.CLUSTER_FQDN}"], "serverAuth")
    pem = pem_file.with_suffix(".tmp")
    pem.write_text(key.read_text() + cert.read_text())
    pem.chmod(0o600)
    pem.replace(pem_file)
    key.unlink()
    cert.unlink()


def issue_certificate(lab: Lab, paths: ClusterPaths, stem: Path, common_name: str, alt_names: list[str],
                      usage: str) -> tuple[Path, Path]:
    """Issue a key and a certificate signed by the lab CA as STEM.key (0600) and STEM.crt; return both paths.

    alt_names: subjectAltName entries (``IP:…``, ``DNS:…``), may be empty for a client certificate;
    usage: the extendedKeyUsage value (``serverAuth``, ``clientAuth`` or ``serverAuth,clientAuth``).
    """
    ca_key = paths.tls_dir / "ca.key"
    key, csr, cert, ext = (stem.with_name(f"{stem.name}.{suffix}") for suffix in ("key", "csr", "crt", "ext"))
    ext.write_text(
        (f"subjectAltName={','.join(alt_names)}\n" if alt_names else "")
        + "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
        f"extendedKeyUsage={usage}\n"
    )
    lab.run(PART, ["openssl", "req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                   "-out", str(csr), "-subj", f"/CN={common_name}"])
    key.chmod(0o600)
    lab.run(PART, ["openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca_file(paths)), "-CAkey", str(ca_key),
                   "-set_serial", f"0x{secrets.token_hex(16)}", "-days", "825", "-extfile", str(ext),
                   "-out", str(cert)])
    csr.unlink()
    ext.unlink()
    return key, cert


def certificate_of(pem: Path) -> str | None:
    """The certificate block of a PEM file, None when the file is missing or holds none."""
    try:
        found = CERT_RE.search(pem.read_text())
    except OSError:
        return None
    return found.group(0) if found else None
