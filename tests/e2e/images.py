"""Test images built offline from Debian's busybox-static, and a local registry to serve them.

Stdlib only (plus /usr/bin/zstd for zstd layers and /usr/bin/docker-registry for the registry).
Everything is deterministic: fixed mtimes, sorted entries, gzip without timestamps, so the same
Image always has the same digests.

    layer = busybox_rootfs_layer()
    image = Image(layers=[layer], cmd=["sh"])
    write_docker_archive("/tmp/bb.tar", image, ["busybox:test"])
    write_oci_archive("/tmp/bb-oci.tar", image, "docker.io/library/busybox:oci")
    with start_registry(tmp) as reg:
        push(reg.host_port, "test/busybox", "v1", image)

Command line (used by the Rust integration tests of crates/image):
    python3 images.py demo-archive FILE NAME
        write the `make run` demo web image (busybox httpd) as a docker-archive named NAME
    python3 images.py registry DIR [USER:PASSWORD]
        start a registry (with htpasswd Basic auth if USER:PASSWORD is given), print
        "ready HOST:PORT", serve until stdin closes or SIGTERM, then stop it
"""

from __future__ import annotations

import base64
import ctypes
import gzip
import hashlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

BUSYBOX = "/usr/bin/busybox"
DOCKER_REGISTRY = "/usr/bin/docker-registry"
ZSTD = "/usr/bin/zstd"
MTIME = 1_700_000_000

APPLETS = [
    "sh", "ash", "ls", "ps", "cat", "echo", "sleep", "true", "false", "env", "id", "hostname",
    "httpd", "wget", "nc", "ip", "ifconfig", "mkdir", "rm", "touch", "kill", "grep", "head",
    "tail", "wc", "date", "mount", "umount", "df", "free", "top", "printf", "test", "[", "seq",
    "yes", "dd", "stat", "cp", "mv", "ln", "chmod", "chown", "find", "sed", "awk", "sort",
    "uniq", "tr", "cut", "xargs", "basename", "dirname", "pwd", "whoami", "uname", "nslookup",
    "ping", "netstat", "route", "vi", "tee", "timeout", "nproc", "readlink", "realpath", "which",
    "touch", "du", "mknod", "mkfifo", "pidof", "pkill", "killall", "nohup", "usleep", "stty",
    "tar", "gzip", "gunzip", "md5sum", "sha256sum", "od", "hexdump", "base64", "expr", "more",
    "less", "init", "sync", "dmesg", "hush", "cmp", "diff", "ipcs", "getopt",
]

MEDIA_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MEDIA_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MEDIA_DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
LAYER_MEDIA = {
    ("oci", "none"): "application/vnd.oci.image.layer.v1.tar",
    ("oci", "gzip"): "application/vnd.oci.image.layer.v1.tar+gzip",
    ("oci", "zstd"): "application/vnd.oci.image.layer.v1.tar+zstd",
    ("docker", "gzip"): "application/vnd.docker.image.rootfs.diff.tar.gzip",
    ("docker", "none"): "application/vnd.docker.image.rootfs.diff.tar",
}


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# ----- layers -----

@dataclass
class Entry:
    """One tar member: kind is 'file', 'dir', 'symlink', 'hardlink' or 'char'."""

    path: str
    kind: str = "file"
    data: bytes = b""
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    target: str = ""


def file(path: str, data: bytes | str, mode: int = 0o644, uid: int = 0, gid: int = 0) -> Entry:
    return Entry(path, "file", data.encode() if isinstance(data, str) else data, mode, uid, gid)


def directory(path: str, mode: int = 0o755, uid: int = 0, gid: int = 0) -> Entry:
    return Entry(path, "dir", mode=mode, uid=uid, gid=gid)


def symlink(path: str, target: str) -> Entry:
    return Entry(path, "symlink", mode=0o777, target=target)


def hardlink(path: str, target: str) -> Entry:
    return Entry(path, "hardlink", target=target)


def whiteout(path: str) -> Entry:
    """Removes `path` of the layers below (AUFS/OCI `.wh.` marker)."""
    parent, _, name = path.rstrip("/").rpartition("/")
    return Entry(f"{parent}/.wh.{name}" if parent else f".wh.{name}", "file", mode=0o644)


def opaque(dir_path: str) -> Entry:
    """Hides everything the layers below have in `dir_path` (`.wh..wh..opq` marker)."""
    return Entry(f"{dir_path.rstrip('/')}/.wh..wh..opq", "file", mode=0o644)


def make_layer(entries: list[Entry]) -> bytes:
    """An uncompressed layer tar of `entries`, in order (parents first is the caller's job)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for e in entries:
            info = tarfile.TarInfo(e.path.lstrip("/"))
            info.mode, info.uid, info.gid, info.mtime = e.mode, e.uid, e.gid, MTIME
            info.uname = info.gname = ""
            if e.kind == "file":
                info.type, info.size = tarfile.REGTYPE, len(e.data)
                tar.addfile(info, io.BytesIO(e.data))
                continue
            info.type = {
                "dir": tarfile.DIRTYPE,
                "symlink": tarfile.SYMTYPE,
                "hardlink": tarfile.LNKTYPE,
                "char": tarfile.CHRTYPE,
            }[e.kind]
            info.linkname = e.target
            tar.addfile(info)
    return out.getvalue()


PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
GROUP = "root:x:0:\nnogroup:x:65534:\n"
INDEX_HTML = "<html><body>hello from peapod busybox</body></html>\n"


def busybox_rootfs_layer() -> bytes:
    """A root filesystem layer: /bin/busybox plus applet symlinks, /etc/passwd and friends."""
    busybox = Path(BUSYBOX).read_bytes()
    entries = [
        directory("bin"),
        file("bin/busybox", busybox, mode=0o755),
    ]
    for applet in sorted(set(APPLETS)):
        entries.append(symlink(f"bin/{applet}", "busybox"))
    entries += [
        directory("dev"),
        directory("etc"),
        file("etc/passwd", PASSWD),
        file("etc/group", GROUP),
        file("etc/hostname", "busybox\n"),
        file("etc/hosts", "127.0.0.1 localhost\n"),
        directory("proc", 0o555),
        directory("root", 0o700),
        directory("sys", 0o555),
        directory("tmp", 0o1777),
        directory("usr"),
        directory("usr/bin"),
        symlink("usr/bin/env", "../../bin/busybox"),
        directory("var"),
        directory("var/www"),
        file("var/www/index.html", INDEX_HTML),
    ]
    return make_layer(entries)


def compress(layer: bytes, compression: str) -> bytes:
    if compression == "none":
        return layer
    if compression == "gzip":
        return gzip.compress(layer, compresslevel=6, mtime=0)
    if compression == "zstd":
        return subprocess.run([ZSTD, "-q", "-c", "-3"], input=layer, stdout=subprocess.PIPE, check=True).stdout
    raise ValueError(f"unknown compression {compression!r}")


# ----- images -----

@dataclass
class Image:
    """An image: uncompressed layer tars (bottom first) and the runtime config."""

    layers: list[bytes] = field(default_factory=list)
    entrypoint: list[str] | None = None
    cmd: list[str] | None = None
    env: list[str] = field(default_factory=lambda: ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"])
    working_dir: str = ""
    user: str = ""
    stop_signal: str | None = None
    os: str = "linux"
    architecture: str = "amd64"

    def config_json(self) -> bytes:
        config: dict = {"Env": self.env}
        if self.entrypoint is not None:
            config["Entrypoint"] = self.entrypoint
        if self.cmd is not None:
            config["Cmd"] = self.cmd
        if self.working_dir:
            config["WorkingDir"] = self.working_dir
        if self.user:
            config["User"] = self.user
        if self.stop_signal:
            config["StopSignal"] = self.stop_signal
        doc = {
            "architecture": self.architecture,
            "os": self.os,
            "created": "2023-11-14T22:13:20Z",
            "config": config,
            "rootfs": {"type": "layers", "diff_ids": [sha256(layer) for layer in self.layers]},
            "history": [{"created": "2023-11-14T22:13:20Z", "created_by": "tests/e2e/images.py"} for _ in self.layers],
        }
        return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()

    @property
    def id(self) -> str:
        """The image id: `sha256:` + digest of the config."""
        return sha256(self.config_json())

    def manifest(self, manifest_format: str = "oci", compression: str = "gzip") -> tuple[bytes, str, dict[str, bytes]]:
        """(manifest bytes, media type, {digest: blob} of config and layers)."""
        if (manifest_format, compression) not in LAYER_MEDIA:
            raise ValueError(f"{manifest_format} manifests cannot carry {compression} layers")
        config = self.config_json()
        blobs = {sha256(config): config}
        layers = []
        for layer in self.layers:
            blob = compress(layer, compression)
            blobs[sha256(blob)] = blob
            layers.append({"mediaType": LAYER_MEDIA[(manifest_format, compression)], "digest": sha256(blob), "size": len(blob)})
        media_type = MEDIA_OCI_MANIFEST if manifest_format == "oci" else MEDIA_DOCKER_MANIFEST
        doc = {
            "schemaVersion": 2,
            "mediaType": media_type,
            "config": {
                "mediaType": MEDIA_OCI_CONFIG if manifest_format == "oci" else MEDIA_DOCKER_CONFIG,
                "digest": sha256(config),
                "size": len(config),
            },
            "layers": layers,
        }
        return json.dumps(doc, indent=2).encode(), media_type, blobs


OPENSSL = "/usr/bin/openssl"


def openssl_layer() -> bytes:
    """Debian's /usr/bin/openssl with the shared libraries and loader it links (read from
    `ldd`), for tests where a pod must speak TLS and verify a certificate: busybox's TLS
    verifies nothing and offers no signature_algorithms, which rustls servers refuse."""
    out = subprocess.run(["ldd", OPENSSL], capture_output=True, text=True, check=True).stdout
    paths = []
    for line in out.splitlines():
        parts = line.split()
        if "=>" in parts and len(parts) > parts.index("=>") + 1:
            paths.append(parts[parts.index("=>") + 1])
        elif parts and parts[0].startswith("/"):
            paths.append(parts[0])  # the loader
    entries: list[Entry] = []
    dirs: set[str] = set()
    for p in [OPENSSL, *paths]:
        rel = p.lstrip("/")
        parent = os.path.dirname(rel)
        for i in range(1, len(parent.split("/")) + 1):
            d = "/".join(parent.split("/")[:i])
            if d not in dirs and d not in ("usr", "usr/bin"):
                dirs.add(d)
                entries.append(directory(d))
        entries.append(file(rel, Path(os.path.realpath(p)).read_bytes(), mode=0o755))
    return make_layer(entries)


def tls_client_image(**config) -> Image:
    """busybox plus openssl (`openssl s_client -CAfile ... -verify_ip ...`)."""
    config.setdefault("cmd", ["sh"])
    return Image(layers=[busybox_rootfs_layer(), openssl_layer()], **config)


def busybox_image(**config) -> Image:
    """The standard test image: one busybox layer, `sh` by default."""
    config.setdefault("cmd", ["sh"])
    return Image(layers=[busybox_rootfs_layer()], **config)


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), mode, MTIME
    tar.addfile(info, io.BytesIO(data))


def _open_out(path: str | os.PathLike, compressed: bool) -> tarfile.TarFile:
    return tarfile.open(path, mode="w:gz" if compressed else "w", format=tarfile.PAX_FORMAT)


def write_docker_archive(path: str | os.PathLike, image: Image, repo_tags: list[str], gzip_outer: bool = False) -> None:
    """A `docker save` style tarball: manifest.json, <config>.json, <n>/layer.tar (uncompressed).

    A layer repeated in the image is written once and linked the way docker save does."""
    config = image.config_json()
    config_name = sha256(config).split(":", 1)[1] + ".json"
    layer_names = []
    with _open_out(path, gzip_outer) as tar:
        _add_bytes(tar, config_name, config)
        written: dict[str, str] = {}
        for layer in image.layers:
            digest = sha256(layer)
            name = f"{len(layer_names):03d}-{digest[7:19]}/layer.tar"
            if digest in written:
                link = tarfile.TarInfo(name)
                link.type, link.linkname, link.mtime = tarfile.SYMTYPE, f"../{written[digest]}", MTIME
                tar.addfile(link)
            else:
                _add_bytes(tar, name, layer)
                written[digest] = name
            layer_names.append(name)
        manifest = [{"Config": config_name, "RepoTags": repo_tags, "Layers": layer_names}]
        _add_bytes(tar, "manifest.json", json.dumps(manifest).encode())


def write_oci_archive(
    path: str | os.PathLike,
    image: Image,
    ref_name: str,
    compression: str = "gzip",
    containerd_name: str | None = None,
    gzip_outer: bool = False,
) -> str:
    """An OCI image layout tarball; returns the manifest digest named in index.json."""
    manifest, media_type, blobs = image.manifest("oci", compression)
    blobs[sha256(manifest)] = manifest
    annotations = {"org.opencontainers.image.ref.name": ref_name}
    if containerd_name:
        annotations["io.containerd.image.name"] = containerd_name
    index = {
        "schemaVersion": 2,
        "mediaType": MEDIA_OCI_INDEX,
        "manifests": [{"mediaType": media_type, "digest": sha256(manifest), "size": len(manifest), "annotations": annotations}],
    }
    with _open_out(path, gzip_outer) as tar:
        _add_bytes(tar, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        for digest, blob in sorted(blobs.items()):
            _add_bytes(tar, "blobs/sha256/" + digest.split(":", 1)[1], blob)
        _add_bytes(tar, "index.json", json.dumps(index).encode())
    return sha256(manifest)


# ----- registry client (distribution API v2) -----

# host:port -> (user, password) of registries started with htpasswd auth; push uses them.
CREDENTIALS: dict[str, tuple[str, str]] = {}


def _request(method: str, url: str, data: bytes | None = None, headers: dict | None = None) -> tuple[int, dict, bytes]:
    headers = dict(headers or {})
    credentials = CREDENTIALS.get(urllib.parse.urlsplit(url).netloc)
    if credentials:
        token = base64.b64encode(f"{credentials[0]}:{credentials[1]}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def push_blob(registry: str, repository: str, blob: bytes) -> str:
    """Monolithic upload: POST to open an upload, PUT ?digest= with the whole blob."""
    digest = sha256(blob)
    status, _, _ = _request("HEAD", f"http://{registry}/v2/{repository}/blobs/{digest}")
    if status == 200:
        return digest
    status, headers, body = _request("POST", f"http://{registry}/v2/{repository}/blobs/uploads/", data=b"")
    if status != 202:
        raise RuntimeError(f"starting upload: {status} {body!r}")
    location = urllib.parse.urljoin(f"http://{registry}/", headers["Location"])
    separator = "&" if "?" in location else "?"
    status, _, body = _request(
        "PUT",
        f"{location}{separator}digest={urllib.parse.quote(digest)}",
        data=blob,
        headers={"Content-Type": "application/octet-stream", "Content-Length": str(len(blob))},
    )
    if status != 201:
        raise RuntimeError(f"uploading {digest}: {status} {body!r}")
    return digest


def push_manifest(registry: str, repository: str, reference: str, manifest: bytes, media_type: str) -> str:
    status, _, body = _request(
        "PUT", f"http://{registry}/v2/{repository}/manifests/{reference}", data=manifest, headers={"Content-Type": media_type}
    )
    if status != 201:
        raise RuntimeError(f"putting manifest {repository}:{reference}: {status} {body!r}")
    return sha256(manifest)


def push(
    registry_host_port: str,
    repository: str,
    tag: str,
    image: Image,
    manifest_format: str = "oci",
    compression: str = "gzip",
) -> str:
    """Pushes `image` as repository:tag; returns the manifest digest."""
    manifest, media_type, blobs = image.manifest(manifest_format, compression)
    for blob in blobs.values():
        push_blob(registry_host_port, repository, blob)
    return push_manifest(registry_host_port, repository, tag, manifest, media_type)


def push_index(
    registry_host_port: str,
    repository: str,
    tag: str,
    platforms: list[tuple[str, str, Image]],
    manifest_format: str = "oci",
    compression: str = "gzip",
) -> str:
    """Pushes one image per (os, architecture) and an index (or manifest list) naming them all
    as repository:tag; returns the index digest."""
    entries = []
    for os_name, arch, image in platforms:
        manifest, media_type, blobs = image.manifest(manifest_format, compression)
        for blob in blobs.values():
            push_blob(registry_host_port, repository, blob)
        digest = push_manifest(registry_host_port, repository, sha256(manifest), manifest, media_type)
        entries.append({"mediaType": media_type, "digest": digest, "size": len(manifest), "platform": {"architecture": arch, "os": os_name}})
    index_type = MEDIA_OCI_INDEX if manifest_format == "oci" else MEDIA_DOCKER_LIST
    index = json.dumps({"schemaVersion": 2, "mediaType": index_type, "manifests": entries}, indent=2).encode()
    return push_manifest(registry_host_port, repository, tag, index, index_type)


# ----- the registry process -----

def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class Registry:
    """A running docker-registry on 127.0.0.1, storage under its directory."""

    def __init__(self, process: subprocess.Popen, host_port: str, storage: Path) -> None:
        self.process = process
        self.host_port = host_port
        self.storage = storage

    @property
    def url(self) -> str:
        return f"http://{self.host_port}"

    def blob_data_path(self, digest: str) -> Path:
        """Where the filesystem driver keeps a blob (tests corrupt it to fake a bad registry)."""
        hex_digest = digest.split(":", 1)[1]
        return self.storage / "docker/registry/v2/blobs/sha256" / hex_digest[:2] / hex_digest / "data"

    def corrupt_blob(self, digest: str) -> None:
        """Flips bytes of a stored blob, keeping its size: the registry serves it unchanged."""
        path = self.blob_data_path(digest)
        data = bytearray(path.read_bytes())
        for i in range(0, len(data), max(1, len(data) // 16)):
            data[i] ^= 0xFF
        path.write_bytes(bytes(data))

    def stop(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait()

    def __enter__(self) -> "Registry":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def start_registry(tmpdir: str | os.PathLike, timeout: float = 30.0, credentials: tuple[str, str] | None = None) -> Registry:
    """Starts /usr/bin/docker-registry on 127.0.0.1:<free port> with storage in tmpdir and
    waits until GET /v2/ answers. With `credentials` (user, password) it demands HTTP Basic
    auth (htpasswd, bcrypt); push() then authenticates by itself."""
    tmp = Path(tmpdir)
    storage = tmp / "registry-data"
    storage.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = tmp / "registry.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: error\n  accesslog:\n    disabled: true\n"
        f"storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )
    if credentials:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import crypt  # bcrypt via libxcrypt; the registry accepts only bcrypt

        htpasswd = tmp / "htpasswd"
        htpasswd.write_text(f"{credentials[0]}:{crypt.crypt(credentials[1], crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16))}\n")
        with open(config, "a") as f:
            f.write(f"auth:\n  htpasswd:\n    realm: peapod-test\n    path: {htpasswd}\n")
        CREDENTIALS[f"127.0.0.1:{port}"] = credentials
    log = open(tmp / "registry.log", "wb")
    process = subprocess.Popen(
        [DOCKER_REGISTRY, "serve", str(config)],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        preexec_fn=_die_with_parent,
    )
    log.close()
    registry = Registry(process, f"127.0.0.1:{port}", storage)
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"docker-registry exited with {process.returncode}: {(tmp / 'registry.log').read_text()}")
        try:
            status, _, _ = _request("GET", f"{registry.url}/v2/")
            if status == 200 or (credentials and status == 401):
                return registry
        except OSError:
            pass
        if time.monotonic() > deadline:
            registry.stop()
            raise TimeoutError(f"docker-registry on {registry.host_port} did not answer within {timeout}s")
        time.sleep(0.05)


def _serve_registry(directory: str, credentials: tuple[str, str] | None) -> None:
    registry = start_registry(directory, credentials=credentials)
    signal.signal(signal.SIGTERM, lambda *_: (registry.stop(), sys.exit(0)))
    print(f"ready {registry.host_port}", flush=True)
    try:
        sys.stdin.read()  # until the caller closes our stdin (or dies)
    finally:
        registry.stop()


def demo_web_image() -> Image:
    """The `make run` demo: busybox httpd serving a page on port 80 (seed 004's web server)."""
    return busybox_image(cmd=["httpd", "-f", "-v", "-p", "80", "-h", "/var/www"])


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "demo-archive":
        write_docker_archive(sys.argv[2], demo_web_image(), [sys.argv[3]])
    elif len(sys.argv) in (3, 4) and sys.argv[1] == "registry":
        user_password = sys.argv[3].split(":", 1) if len(sys.argv) == 4 else None
        _serve_registry(sys.argv[2], (user_password[0], user_password[1]) if user_password else None)
    else:
        sys.exit(__doc__)
