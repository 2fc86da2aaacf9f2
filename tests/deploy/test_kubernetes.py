"""deploy/kubernetes: the Dask operator manifests against the operator's own CRD schemas and
what dask_kubernetes builds; the dask-gateway options against dask-gateway-server; the run Job
against eocube's configuration schema."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "kubernetes"

dask_kubernetes = pytest.importorskip(
    "dask_kubernetes", reason="pip install dask-kubernetes (the deploy extra)")
jsonschema = pytest.importorskip("jsonschema")


def docs(name: str) -> dict[str, dict[str, Any]]:
    out = {}
    for d in yaml.safe_load_all((K8S / name).read_text()):
        if d:
            out[d["kind"]] = d
    return out


def crd_schema(kind: str) -> dict[str, Any]:
    """The openAPIV3Schema of the operator's CRD (as its Helm chart installs it)."""
    crds = Path(dask_kubernetes.__file__).parent / "operator" / "deployment" / "helm" / \
        "dask-kubernetes-operator" / "crds"
    crd = yaml.safe_load((crds / f"{kind.lower()}.yaml").read_text())
    assert crd["spec"]["names"]["kind"] == kind
    (version,) = crd["spec"]["versions"]
    return version["schema"]["openAPIV3Schema"]


def strict(schema: Any) -> Any:
    """The schema with unknown fields refused: the API server would silently prune them, so a
    misspelt or misplaced key would vanish without a word."""
    if isinstance(schema, dict):
        s = {k: strict(v) for k, v in schema.items()}
        if "properties" in s and "additionalProperties" not in s and \
                not s.get("x-kubernetes-preserve-unknown-fields"):
            s["additionalProperties"] = False
        return s
    if isinstance(schema, list):
        return [strict(v) for v in schema]
    return schema


def validate(doc: dict[str, Any]) -> None:
    schema = crd_schema(doc["kind"])
    assert doc["apiVersion"] == "kubernetes.dask.org/v1"
    jsonschema.validate(doc["spec"], strict(schema["properties"]["spec"]))


def container(pod: dict[str, Any], name: str) -> dict[str, Any]:
    (c,) = [c for c in pod["containers"] if c["name"] == name]
    return c


def ports(c: dict[str, Any]) -> set[tuple[str, int]]:
    return {(p["name"], p["containerPort"]) for p in c["ports"]}


def test_manifests_match_the_operator_crd_schemas():
    d = docs("daskcluster.yaml")
    assert set(d) == {"PersistentVolumeClaim", "DaskCluster", "DaskWorkerGroup"}
    validate(d["DaskCluster"])
    validate(d["DaskWorkerGroup"])


def test_the_strict_schema_catches_a_misplaced_key():
    bad = copy.deepcopy(docs("daskcluster.yaml")["DaskWorkerGroup"])
    c = bad["spec"]["worker"]["spec"]["containers"][0]
    bad["spec"]["worker"]["spec"]["resources"] = c.pop("resources")  # pod level: pruned
    with pytest.raises(jsonschema.ValidationError, match="resources"):
        validate(bad)
    bad = copy.deepcopy(docs("daskcluster.yaml")["DaskWorkerGroup"])
    del bad["spec"]["cluster"]
    with pytest.raises(jsonschema.ValidationError, match="cluster"):
        validate(bad)


def test_daskcluster_has_the_structure_make_cluster_spec_builds():
    from dask_kubernetes.operator import make_cluster_spec

    ours = docs("daskcluster.yaml")["DaskCluster"]
    name = ours["metadata"]["name"]
    image = container(ours["spec"]["scheduler"]["spec"], "scheduler")["image"]
    ref = make_cluster_spec(name=name, image=image, n_workers=4)
    assert (ours["apiVersion"], ours["kind"]) == (ref["apiVersion"], ref["kind"])
    assert set(ref["spec"]) <= set(ours["spec"])
    assert set(ref["spec"]["scheduler"]) == set(ours["spec"]["scheduler"])
    # scheduler: command, ports, probes and service as the operator's own builder has them
    rs = container(ref["spec"]["scheduler"]["spec"], "scheduler")
    os_ = container(ours["spec"]["scheduler"]["spec"], "scheduler")
    assert os_["args"][0] == rs["args"][0] and ports(os_) == ports(rs)
    for probe in ("readinessProbe", "livenessProbe"):
        assert os_[probe]["httpGet"] == rs[probe]["httpGet"]
    rsvc, osvc = ref["spec"]["scheduler"]["service"], ours["spec"]["scheduler"]["service"]
    assert osvc["selector"] == rsvc["selector"]
    assert [(p["name"], p["port"], p["targetPort"]) for p in osvc["ports"]] == \
        [(p["name"], p["port"], p["targetPort"]) for p in rsvc["ports"]]
    # CPU workers
    rw = container(ref["spec"]["worker"]["spec"], "worker")
    ow = container(ours["spec"]["worker"]["spec"], "worker")
    assert set(ref["spec"]["worker"]) == set(ours["spec"]["worker"])
    assert ow["args"][0] == rw["args"][0] == "dask-worker"
    assert ports(ow) == ports(rw)
    for flag in ("--name", "--dashboard-address"):
        assert ow["args"][ow["args"].index(flag) + 1] == rw["args"][rw["args"].index(flag) + 1]
    assert {c["image"] for c in (os_, ow)} == {image}


def test_gpu_worker_group_has_the_structure_make_worker_spec_builds():
    from dask.utils import parse_bytes
    from dask_kubernetes.operator import make_worker_spec

    d = docs("daskcluster.yaml")
    wg = d["DaskWorkerGroup"]
    assert wg["spec"]["cluster"] == d["DaskCluster"]["metadata"]["name"]
    assert wg["metadata"]["name"].startswith(wg["spec"]["cluster"] + "-")
    ours = container(wg["spec"]["worker"]["spec"], "worker")
    ref = make_worker_spec(image=ours["image"], n_workers=2, worker_command="dask-cuda-worker",
                           resources={"limits": {"nvidia.com/gpu": 1}})
    assert set(ref) == set(wg["spec"]["worker"])
    rc = container(ref["spec"], "worker")
    assert ours["args"][0] == rc["args"][0] == "dask-cuda-worker"
    assert ports(ours) == ports(rc)
    # "1", not 1: the CRD types quantities as strings (the builder's int would be refused)
    assert ours["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert int(ours["resources"]["limits"]["nvidia.com/gpu"]) == \
        rc["resources"]["limits"]["nvidia.com/gpu"]
    # the scheduler address and name the operator injects into every worker's environment
    assert "$(DASK_SCHEDULER_ADDRESS)" in ours["args"] and "$(DASK_WORKER_NAME)" in ours["args"]
    # the CPU group has no GPU; both fit their memory limits
    cpu = container(d["DaskCluster"]["spec"]["worker"]["spec"], "worker")
    assert "nvidia.com/gpu" not in cpu["resources"]["limits"]
    for c in (cpu, ours):
        limit = parse_bytes(c["resources"]["limits"]["memory"].replace("Gi", "GiB"))
        asked = parse_bytes(c["args"][c["args"].index("--memory-limit") + 1])
        assert asked < limit
        assert int(c["args"][c["args"].index("--nthreads") + 1]) <= int(
            c["resources"]["limits"]["cpu"])


def test_volumes_and_run_job_agree_with_the_cluster():
    d = docs("daskcluster.yaml")
    claim = d["PersistentVolumeClaim"]["metadata"]["name"]
    assert "ReadWriteMany" in d["PersistentVolumeClaim"]["spec"]["accessModes"]
    for pod in (d["DaskCluster"]["spec"]["worker"]["spec"],
                d["DaskWorkerGroup"]["spec"]["worker"]["spec"]):
        assert pod["volumes"][0]["persistentVolumeClaim"]["claimName"] == claim
    run = docs("run-job.yaml")
    job = run["Job"]["spec"]["template"]["spec"]
    assert {v.get("persistentVolumeClaim", {}).get("claimName") for v in job["volumes"]} >= {
        claim}
    assert job["containers"][0]["args"] == ["eocube", "run", "/config/run.yaml"]
    cfg = yaml.safe_load(run["ConfigMap"]["data"]["run.yaml"])
    host = cfg["cluster"]["address"].removeprefix("tcp://").split(".")[0]
    assert host == d["DaskCluster"]["metadata"]["name"] + "-scheduler"
    assert cfg["output"].startswith("/data/")


def test_run_job_config_is_a_valid_eocube_configuration(tmp_path):
    config = pytest.importorskip("eocube.pipeline.config")
    text = docs("run-job.yaml")["ConfigMap"]["data"]["run.yaml"]
    (tmp_path / "run.yaml").write_text(text)
    cfg = config.load_config(tmp_path / "run.yaml")
    assert cfg.cluster.kind == "address"
    assert cfg.cluster.address.endswith(".svc.cluster.local:8786")


# -- dask-gateway ---------------------------------------------------------------------------

def gateway_options() -> Any:
    pytest.importorskip("dask_gateway_server",
                        reason="pip install dask-gateway-server (tests of the deploy extra)")
    from traitlets.config import Config

    values = yaml.safe_load((K8S / "gateway-options.yaml").read_text())
    c = Config()
    for code in values["gateway"]["extraConfig"].values():
        exec(compile(code, "gateway-options.yaml", "exec"), {"c": c})
    return values, c.Backend.cluster_options


@pytest.mark.parametrize("kind", ["cpu", "gpu"])
def test_gateway_options_make_a_valid_kube_cluster_config(kind):
    from dask_gateway_server.backends.kubernetes.backend import KubeClusterConfig

    _, options = gateway_options()
    spec = {f["field"]: f for f in options.get_specification()}
    assert set(spec) == {"worker_kind", "worker_cores", "worker_memory"}
    request = options.parse_options({"worker_kind": kind, "worker_cores": 6})
    cfg = options.get_configuration(request, user=None)
    traits = set(KubeClusterConfig.class_trait_names())
    assert set(cfg) <= traits, set(cfg) - traits
    kc = KubeClusterConfig(**cfg)
    assert kc.worker_cores == 6 and kc.worker_memory == 16 * 2**30
    limits = kc.worker_extra_container_config.get("resources", {}).get("limits", {})
    if kind == "gpu":
        assert kc.worker_cmd[0] == "dask-cuda-worker" and limits == {"nvidia.com/gpu": 1}
        assert kc.worker_extra_pod_config["tolerations"][0]["key"] == "nvidia.com/gpu"
        assert kc.worker_threads == 1
    else:
        assert kc.worker_cmd == ["dask-worker"] and not limits and kc.worker_threads == 6


def test_gateway_options_refuse_unknown_values_and_use_the_image():
    values, options = gateway_options()
    with pytest.raises(ValueError):
        options.parse_options({"worker_kind": "tpu"})
    with pytest.raises(ValueError, match="Unknown fields"):
        options.parse_options({"gpus": 2})
    image = values["gateway"]["backend"]["image"]
    d = docs("daskcluster.yaml")
    want = container(d["DaskCluster"]["spec"]["scheduler"]["spec"], "scheduler")["image"]
    assert f"{image['name']}:{image['tag']}" == want
