"""A real local Kubernetes control plane, built from Go modules and run as plain processes.

Why: Celeriac's operator is tested against a real kube-apiserver (CRDs, CEL rules, Leases,
server-side apply) with etcd and kube-controller-manager (garbage collection, Deployments,
namespace deletion), on machines without Docker or binary downloads. See
``shared/control-plane.md`` for the research behind every choice below.

Binaries are built once from the Go module proxy into ``$CELERIAC_CACHE`` (default
``~/.cache/celeriac``) and reused while their stamp matches the pinned version and Go version:

* ``bin/k8s-<v>/{kube-apiserver,kube-controller-manager,kubectl}`` from a throw-away builder
  module that requires ``k8s.io/kubernetes`` and replaces its staging modules;
* ``bin/etcd-<v>/etcd`` from a builder module requiring ``go.etcd.io/etcd/server/v3``;
* ``bin/helm-<v>/helm`` by ``go install``.

The same module serves users (``scripts/control-plane build|up|down|status``) and the pytest
fixtures (``ControlPlane.start``), so tests run what users run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path

K8S_VERSION = "v1.36.3"
ETCD_VERSION = "v3.6.16"
HELM_VERSION = "v3.21.4"
GO_LINE = "1.26.0"

# Staging modules of k8s.io/kubernetes 1.36 (shared/control-plane.md §1.2): each is replaced
# by its published tag v0.<minor>.<patch>, since k8s.io/kubernetes requires them at v0.0.0.
K8S_STAGING_MODULES = (
    "api", "apiextensions-apiserver", "apimachinery", "apiserver", "cli-runtime", "client-go",
    "cloud-provider", "cluster-bootstrap", "code-generator", "component-base", "component-helpers",
    "controller-manager", "cri-api", "cri-client", "cri-streaming", "csi-translation-lib",
    "dynamic-resource-allocation", "endpointslice", "externaljwt", "kms", "kube-aggregator",
    "kube-controller-manager", "kube-proxy", "kube-scheduler", "kubectl", "kubelet", "metrics",
    "mount-utils", "pod-security-admission", "sample-apiserver", "sample-cli-plugin",
    "sample-controller", "streaming",
)
K8S_COMMANDS = ("kube-apiserver", "kube-controller-manager", "kubectl")

# Controllers the tests rely on: GC for owner references, Deployments -> ReplicaSets -> Pods,
# namespace deletion, default ServiceAccounts and the root CA ConfigMap.
KCM_CONTROLLERS = (
    "garbage-collector-controller,namespace-controller,deployment-controller,replicaset-controller,"
    "serviceaccount-controller,root-ca-certificate-publisher-controller,disruption-controller"
)

BUILD_HINT = "scripts/control-plane build"
START_TIMEOUT_S = 120.0


class ControlPlaneError(RuntimeError):
    """The control plane cannot be built or started; the message says how to fix it."""


def cache_dir() -> Path:
    return Path(os.environ.get("CELERIAC_CACHE", Path.home() / ".cache" / "celeriac"))


def _go_version() -> str:
    go = shutil.which("go")
    if go is None:
        raise ControlPlaneError("Go is not installed; install Go >= 1.26 (Debian: apt-get install golang-go)")
    return subprocess.run([go, "env", "GOVERSION"], check=True, capture_output=True, text=True).stdout.strip()


# ---------------------------------------------------------------------------------------------
# Building


@dataclass(frozen=True)
class Component:
    """One cached family of binaries and how to build it."""

    name: str
    version: str
    binaries: tuple[str, ...]

    @property
    def bin_dir(self) -> Path:
        return cache_dir() / "bin" / f"{self.name}-{self.version}"

    @property
    def build_dir(self) -> Path:
        return cache_dir() / "build" / f"{self.name}-{self.version}"

    @property
    def stamp(self) -> Path:
        return self.bin_dir / ".stamp.json"

    def path(self, binary: str) -> Path:
        return self.bin_dir / binary

    def is_built(self, go_version: str | None = None) -> bool:
        """True when every binary exists and the stamp matches this version (and Go, if given)."""
        try:
            stamp = json.loads(self.stamp.read_text())
        except (OSError, ValueError):
            return False
        if stamp.get("version") != self.version:
            return False
        if go_version is not None and stamp.get("go") != go_version:
            return False
        return all(self.path(b).is_file() for b in self.binaries)


K8S = Component("k8s", K8S_VERSION, K8S_COMMANDS)
ETCD = Component("etcd", ETCD_VERSION, ("etcd",))
HELM = Component("helm", HELM_VERSION, ("helm",))
COMPONENTS = (ETCD, K8S, HELM)


def _k8s_ldflags() -> str:
    major, minor = K8S_VERSION.lstrip("v").split(".")[:2]
    flags = ["-s", "-w"]
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [
            f"-X {pkg}.gitVersion={K8S_VERSION}",
            f"-X {pkg}.gitMajor={major}",
            f"-X {pkg}.gitMinor={minor}",
            f"-X {pkg}.gitTreeState=clean",
        ]
    return " ".join(flags)


def _helm_ldflags() -> str:
    major, minor = K8S_VERSION.lstrip("v").split(".")[:2]
    flags = ["-s", "-w", f"-X helm.sh/helm/v3/internal/version.version={HELM_VERSION}"]
    for pkg in ("helm.sh/helm/v3/pkg/chartutil", "helm.sh/helm/v3/pkg/lint/rules"):
        flags += [f"-X {pkg}.k8sVersionMajor={major}", f"-X {pkg}.k8sVersionMinor={minor}"]
    return " ".join(flags)


def k8s_builder_gomod() -> str:
    """The builder module that makes ``k8s.io/kubernetes`` buildable as a dependency."""
    staging = K8S_VERSION.replace("v1.", "v0.", 1)
    tools = "\n".join(f"\tk8s.io/kubernetes/cmd/{c}" for c in K8S_COMMANDS)
    replaces = "\n".join(f"\tk8s.io/{m} => k8s.io/{m} {staging}" for m in K8S_STAGING_MODULES)
    return (
        f"module celeriac.local/build/k8s\n\ngo {GO_LINE}\n\ngodebug default=go1.26\n\n"
        f"require k8s.io/kubernetes {K8S_VERSION}\n\ntool (\n{tools}\n)\n\nreplace (\n{replaces}\n)\n"
    )


def etcd_builder_gomod() -> str:
    return (
        f"module celeriac.local/build/etcd\n\ngo {GO_LINE}\n\n"
        f"require go.etcd.io/etcd/server/v3 {ETCD_VERSION}\n\ntool go.etcd.io/etcd/server/v3\n"
    )


def _go_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update({"CGO_ENABLED": "0", "GOFLAGS": "-modcacherw", "GOTOOLCHAIN": "local"})
    return env


def _run_with_progress(label: str, cmd: list[str], cwd: Path, env: dict[str, str]) -> None:
    """Run a Go command, printing a progress line (packages done, elapsed) every 15 s."""
    started = time.monotonic()
    log_path = cwd / f"{label}.log"
    packages = 0
    done = threading.Event()

    def report() -> None:
        while not done.wait(15):
            print(f"  [{label}] {packages} packages, {time.monotonic() - started:.0f}s", flush=True)

    ticker = threading.Thread(target=report, daemon=True)
    ticker.start()
    with log_path.open("w") as log:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.PIPE, text=True)
        assert proc.stderr is not None
        for line in proc.stderr:
            log.write(line)
            packages += 1
        code = proc.wait()
    done.set()
    if code != 0:
        tail = "".join(log_path.read_text().splitlines(keepends=True)[-30:])
        raise ControlPlaneError(f"{label} failed (exit {code}); full log: {log_path}\n{tail}")


def build_component(component: Component, go_version: str) -> float:
    """Build one component into its cache directory; returns the wall time in seconds."""
    started = time.monotonic()
    component.build_dir.mkdir(parents=True, exist_ok=True)
    component.bin_dir.mkdir(parents=True, exist_ok=True)
    component.stamp.unlink(missing_ok=True)
    env = _go_env()
    out = f"-o={component.bin_dir}/"
    if component is K8S:
        (component.build_dir / "go.mod").write_text(k8s_builder_gomod())
        _run_with_progress("k8s mod tidy", ["go", "mod", "tidy"], component.build_dir, env)
        pkgs = [f"k8s.io/kubernetes/cmd/{c}" for c in K8S_COMMANDS]
        cmd = ["go", "build", "-v", "-trimpath", f"-ldflags={_k8s_ldflags()}", out, *pkgs]
        _run_with_progress("k8s build", cmd, component.build_dir, env)
    elif component is ETCD:
        (component.build_dir / "go.mod").write_text(etcd_builder_gomod())
        _run_with_progress("etcd mod tidy", ["go", "mod", "tidy"], component.build_dir, env)
        cmd = ["go", "build", "-v", "-trimpath", "-ldflags=-s -w", f"-o={component.path('etcd')}",
               "go.etcd.io/etcd/server/v3"]
        _run_with_progress("etcd build", cmd, component.build_dir, env)
    else:
        env["GOBIN"] = str(component.bin_dir)
        cmd = ["go", "install", "-v", "-trimpath", f"-ldflags={_helm_ldflags()}",
               f"helm.sh/helm/v3/cmd/helm@{HELM_VERSION}"]
        _run_with_progress("helm install", cmd, component.build_dir, env)
    elapsed = time.monotonic() - started
    _verify_versions(component)
    component.stamp.write_text(
        json.dumps({"version": component.version, "go": go_version, "build_seconds": round(elapsed, 1)})
    )
    return elapsed


def _verify_versions(component: Component) -> None:
    """Refuse to stamp a build whose binaries do not report the pinned version."""
    checks = {
        "kube-apiserver": ["--version"],
        "kube-controller-manager": ["--version"],
        "kubectl": ["version", "--client"],
        "etcd": ["--version"],
        "helm": ["version", "--short"],
    }
    for binary in component.binaries:
        out = subprocess.run(
            [str(component.path(binary)), *checks[binary]], capture_output=True, text=True, check=False
        ).stdout
        if component.version.lstrip("v") not in out:
            raise ControlPlaneError(f"{binary} reports {out.strip()!r}, expected {component.version}")


def build(components: Sequence[Component] = COMPONENTS, force: bool = False) -> None:
    """Build every component that is not already cached, printing progress and timings."""
    go_version = _go_version()
    print(f"celeriac control plane: cache {cache_dir()}, {go_version}", flush=True)
    for component in components:
        if not force and component.is_built(go_version):
            print(f"  {component.name} {component.version}: cached", flush=True)
            continue
        print(f"  {component.name} {component.version}: building ...", flush=True)
        elapsed = build_component(component, go_version)
        print(f"  {component.name} {component.version}: built in {elapsed:.0f}s", flush=True)


def require_built(*components: Component) -> None:
    """Raise a clear error naming the build command when a binary is missing."""
    missing = [f"{c.name} {c.version}" for c in components if not c.is_built()]
    if missing:
        raise ControlPlaneError(
            f"control-plane binaries not built: {', '.join(missing)} (cache {cache_dir()}); "
            f"build them with: {BUILD_HINT}"
        )


# ---------------------------------------------------------------------------------------------
# Running


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _insecure_context() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2, context=_insecure_context()) as resp:
            return bool(resp.status == 200)
    except (OSError, ValueError):
        return False


@dataclass
class ControlPlane:
    """etcd + kube-apiserver + kube-controller-manager on loopback, state kept in ``directory``."""

    directory: Path
    etcd_port: int = 0
    etcd_peer_port: int = 0
    apiserver_port: int = 0
    token: str = ""
    pids: dict[str, int] = field(default_factory=dict)
    started_s: float = 0.0
    # Popen handles of processes this Python process started (not persisted): kept so they are
    # waited for on stop instead of being garbage-collected while running.
    _procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict, repr=False, compare=False)

    @property
    def kubeconfig(self) -> Path:
        return self.directory / "kubeconfig"

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.apiserver_port}"

    @property
    def logs(self) -> Path:
        return self.directory / "logs"

    @property
    def state_file(self) -> Path:
        return self.directory / "state.json"

    # -- lifecycle ------------------------------------------------------------------------

    def start(self, controller_manager: bool = True) -> None:
        """Start every process and wait until the API server is ready; retries port races."""
        require_built(ETCD, K8S)
        started = time.monotonic()
        last: Exception | None = None
        for _ in range(3):
            try:
                self._start_once(controller_manager)
                self.started_s = time.monotonic() - started
                self.save()
                return
            except ControlPlaneError as exc:
                last = exc
                self.stop()
            except BaseException:
                self.stop()  # never leave half a control plane running (Ctrl-C, unexpected errors)
                raise
        raise ControlPlaneError(f"control plane did not start: {last}")

    def _start_once(self, controller_manager: bool) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(exist_ok=True)
        certs = self.directory / "certs"
        certs.mkdir(exist_ok=True)
        self.etcd_port, self.etcd_peer_port, self.apiserver_port = free_port(), free_port(), free_port()
        self.token = self.token or os.urandom(16).hex()
        self._write_auth(certs)

        etcd_url = f"http://127.0.0.1:{self.etcd_port}"
        self._spawn("etcd", [
            str(ETCD.path("etcd")),
            f"--data-dir={self.directory / 'etcd'}",
            f"--listen-client-urls={etcd_url}",
            f"--advertise-client-urls={etcd_url}",
            f"--listen-peer-urls=http://127.0.0.1:{self.etcd_peer_port}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{self.etcd_peer_port}",
            f"--initial-cluster=default=http://127.0.0.1:{self.etcd_peer_port}",
            "--unsafe-no-fsync=true",
            "--log-level=warn",
        ])
        self._wait("etcd", lambda: _http_ok(f"{etcd_url}/health"))

        self._spawn("kube-apiserver", [
            str(K8S.path("kube-apiserver")),
            f"--etcd-servers={etcd_url}",
            f"--cert-dir={certs}",
            f"--secure-port={self.apiserver_port}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            "--endpoint-reconciler-type=none",
            "--service-cluster-ip-range=10.0.0.0/24",
            "--authorization-mode=RBAC",
            f"--token-auth-file={certs / 'tokens.csv'}",
            f"--service-account-issuer=https://127.0.0.1:{self.apiserver_port}/",
            f"--service-account-signing-key-file={certs / 'sa.key'}",
            f"--service-account-key-file={certs / 'sa.key'}",
            "--disable-admission-plugins=ServiceAccount",
            "--allow-privileged=true",
        ])
        self._wait("kube-apiserver", lambda: _http_ok(f"{self.server}/readyz"))
        self._write_kubeconfig(certs / "apiserver.crt")

        if controller_manager:
            self._spawn("kube-controller-manager", [
                str(K8S.path("kube-controller-manager")),
                f"--kubeconfig={self.kubeconfig}",
                "--leader-elect=false",
                "--secure-port=0",
                f"--controllers={KCM_CONTROLLERS}",
                f"--root-ca-file={certs / 'apiserver.crt'}",
            ])

    def _write_auth(self, certs: Path) -> None:
        (certs / "tokens.csv").write_text(f'{self.token},admin,admin-uid,"system:masters"\n')
        key = certs / "sa.key"
        if not key.exists():
            openssl = shutil.which("openssl")
            if openssl is None:
                raise ControlPlaneError("openssl is not installed; install it with: apt-get install -y openssl")
            subprocess.run([openssl, "genrsa", "-out", str(key), "2048"], check=True, capture_output=True)

    def _write_kubeconfig(self, ca: Path) -> None:
        import base64

        ca_data = base64.b64encode(ca.read_bytes()).decode()
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "celeriac", "cluster": {"server": self.server,
                                                          "certificate-authority-data": ca_data}}],
            "users": [{"name": "admin", "user": {"token": self.token}}],
            "contexts": [{"name": "celeriac", "context": {"cluster": "celeriac", "user": "admin"}}],
            "current-context": "celeriac",
        }
        # JSON is valid YAML, so kubectl, helm and the Python client all read this file.
        self.kubeconfig.write_text(json.dumps(config, indent=2))
        self.kubeconfig.chmod(0o600)

    def _spawn(self, name: str, argv: list[str]) -> None:
        log = (self.logs / f"{name}.log").open("ab")
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        log.close()
        self.pids[name] = proc.pid
        self._procs[name] = proc

    def _wait(self, name: str, ready: object) -> None:
        assert callable(ready)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if not _alive(self.pids[name]):
                raise ControlPlaneError(f"{name} exited during start-up; log: {self.logs / (name + '.log')}\n"
                                        + _tail(self.logs / f"{name}.log"))
            if ready():
                return
            time.sleep(0.2)
        raise ControlPlaneError(f"{name} not ready after {START_TIMEOUT_S:.0f}s; log: {self.logs}")

    def stop(self, timeout_s: float = 20.0) -> None:
        """SIGTERM every process (reverse start order), SIGKILL stragglers, forget the pids."""
        for name in reversed(list(self.pids)):
            _terminate(self.pids[name], timeout_s)
            proc = self._procs.pop(name, None)
            if proc is not None:
                proc.wait()
        self.pids.clear()
        self.state_file.unlink(missing_ok=True)

    def running(self) -> dict[str, bool]:
        return {name: _alive(pid) for name, pid in self.pids.items()}

    def ready(self) -> bool:
        return bool(self.apiserver_port) and _http_ok(f"{self.server}/readyz")

    # -- persisted state for `up` / `down` / `status` -------------------------------------

    def save(self) -> None:
        data = {f.name: getattr(self, f.name) for f in fields(self) if not f.name.startswith("_")}
        data["directory"] = str(self.directory)
        self.state_file.write_text(json.dumps(data))

    @classmethod
    def load(cls, directory: Path) -> ControlPlane | None:
        try:
            data = json.loads((directory / "state.json").read_text())
        except (OSError, ValueError):
            return None
        data["directory"] = Path(data["directory"])
        return cls(**data)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of this process still answers kill(0); reap it if it exited.
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return True


def _terminate(pid: int, timeout_s: float) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not _alive(pid):
                return
            time.sleep(0.1)


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "".join(path.read_text(errors="replace").splitlines(keepends=True)[-lines:])
    except OSError:
        return ""


def default_run_dir() -> Path:
    return Path(os.environ.get("CELERIAC_CONTROL_PLANE_DIR", Path(tempfile.gettempdir()) / "celeriac-control-plane"))


# ---------------------------------------------------------------------------------------------
# Command line


def _cmd_build(args: argparse.Namespace) -> int:
    build(force=args.force)
    return 0


def _cmd_up(args: argparse.Namespace) -> int:
    directory = Path(args.dir)
    existing = ControlPlane.load(directory)
    if existing is not None and existing.ready():
        print(f"already running; export KUBECONFIG={existing.kubeconfig}")
        return 0
    if existing is not None:
        existing.stop()
    plane = ControlPlane(directory)
    plane.start(controller_manager=not args.no_controller_manager)
    print(f"control plane ready in {plane.started_s:.1f}s at {plane.server} (logs: {plane.logs})",
          file=sys.stderr)
    print(f"export KUBECONFIG={plane.kubeconfig}")
    return 0


def _cmd_down(args: argparse.Namespace) -> int:
    plane = ControlPlane.load(Path(args.dir))
    if plane is None:
        print("not running")
        return 0
    plane.stop()
    shutil.rmtree(plane.directory, ignore_errors=True)
    print("stopped")
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    for component in COMPONENTS:
        state = "built" if component.is_built() else f"missing (run {BUILD_HINT})"
        print(f"{component.name:5} {component.version:9} {state}")
    plane = ControlPlane.load(Path(args.dir))
    if plane is None:
        print("control plane: not running")
        return 1
    for name, alive in plane.running().items():
        print(f"{name:24} {'running' if alive else 'DEAD'} (pid {plane.pids[name]})")
    ready = plane.ready()
    print(f"api server {plane.server}: {'ready' if ready else 'NOT READY'}; KUBECONFIG={plane.kubeconfig}")
    return 0 if ready and all(plane.running().values()) else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="control-plane", description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--dir", default=str(default_run_dir()), help="state, kubeconfig and logs directory")
    sub = parser.add_subparsers(dest="command", required=True)
    p_build = sub.add_parser("build", help="build etcd, kube-apiserver, kube-controller-manager, kubectl, helm")
    p_build.add_argument("--force", action="store_true", help="rebuild even when cached")
    p_up = sub.add_parser("up", help="start the control plane and print `export KUBECONFIG=...`")
    p_up.add_argument("--no-controller-manager", action="store_true")
    sub.add_parser("down", help="stop the control plane and remove its state")
    sub.add_parser("status", help="show built binaries and running processes")
    args = parser.parse_args(argv)
    handlers = {"build": _cmd_build, "up": _cmd_up, "down": _cmd_down, "status": _cmd_status}
    try:
        return handlers[args.command](args)
    except ControlPlaneError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

__all__ = ["COMPONENTS", "ETCD", "HELM", "K8S", "ControlPlane", "ControlPlaneError", "build", "main"]
