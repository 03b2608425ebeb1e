"""The lab CA and the RAPI certificate it signs, so clients verify RAPI by the master IP.

Ganeti's own RAPI certificate has no subjectAltName; the lab installs one valid for
https://MASTER_IP:5080 and for the cluster name. Both files survive repairs (only `down` removes them).
"""

from __future__ import annotations

import re
import secrets
from pathlib import Path

from libcluster.lab import topology
from libcluster.lab.clusterfs import PART, ClusterPaths
from libcluster.lab.common import Lab

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
    ca_key = paths.tls_dir / "ca.key"
    key, csr, cert, ext = (pem_file.with_name(f"{pem_file.stem}.{suffix}") for suffix in ("key", "csr", "crt", "ext"))
    ext.write_text(
        f"subjectAltName=IP:{topology.MASTER_IP},DNS:{topology.CLUSTER_FQDN}\n"
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
    )
    lab.run(PART, ["openssl", "req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                   "-out", str(csr), "-subj", f"/CN={topology.CLUSTER_FQDN}"])
    lab.run(PART, ["openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca_file(paths)), "-CAkey", str(ca_key),
                   "-set_serial", f"0x{secrets.token_hex(16)}", "-days", "825", "-extfile", str(ext),
                   "-out", str(cert)])
    pem = pem_file.with_suffix(".tmp")
    pem.write_text(key.read_text() + cert.read_text())
    pem.chmod(0o600)
    pem.replace(pem_file)
    for leftover in (key, csr, cert, ext):
        leftover.unlink()


def certificate_of(pem: Path) -> str | None:
    """The certificate block of a PEM file, None when the file is missing or holds none."""
    try:
        found = CERT_RE.search(pem.read_text())
    except OSError:
        return None
    return found.group(0) if found else None
