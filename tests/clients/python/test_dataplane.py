"""acr-import's login servers driven by the real data-plane SDK (azure-containerregistry 1.2.0).

The client talks to https://<LOGIN_SERVER> exactly as it would to Azure: the name does not
resolve here, so run.sh sets HTTPS_PROXY to the emulator's CONNECT proxy (which tunnels
<name>.azurecr.io:443 to the login servers' HTTPS listener), NO_PROXY=127.0.0.1,localhost, and
REQUESTS_CA_BUNDLE to a bundle holding the emulator's CA. The SDK does ACR's challenge dance
itself (401 -> /oauth2/exchange with an Entra token -> /oauth2/token -> retry with the token).

Run through ../run.sh (suite "dataplane"), which passes the environment the Rust runner
(tests/e2e/clients.rs) sets:
  LOGIN_SERVER        <name>.azurecr.io of registry DP_REGISTRY (created through ARM)
  DP_REPO / DP_TAGS   a repository holding the 3-platform index under each tag (oldest first)
  DP_INDEX_DIGEST     the index's digest; DP_CHILD_DIGESTS its children (comma-separated)
  DP_PLATFORMS        os/arch[/variant] of each child, in the index's order
  DP_BLOB_DIGESTS     every config and layer digest of the image
  DP_DELETE_REPO      a second repository (tag v1 of the same index) this suite deletes
  DP_BIG_REPO / DP_BIG_DIGEST   a single-platform image (v1) with a layer over 4 MiB
  ARM_ENDPOINT, ARM_CA, AZ_SUBSCRIPTION, AZ_RESOURCE_GROUP   the ARM API (for importImage)
  IDENTITY_ENDPOINT, IDENTITY_HEADER   the emulator's managed-identity token endpoint
  SRC_ANON_HOST, SRC_SINGLE, SRC_SINGLE_DIGEST   an anonymous source and a single-platform image

The tests run in file order and build on each other (the lock test before the deletes).
"""
import hashlib
import json
import logging
import os
import time

import pytest
import requests
from azure.core.credentials import AccessToken
from azure.core.exceptions import ResourceNotFoundError
from azure.containerregistry import (
    ArtifactManifestOrder,
    ArtifactTagOrder,
    ContainerRegistryClient,
)

ENV = os.environ
DEBUG = ENV.get("ACR_CLIENTS_DEBUG") == "1"
if DEBUG:
    logging.basicConfig(level=logging.DEBUG)

LOGIN_SERVER = ENV["LOGIN_SERVER"]
REGISTRY = ENV["DP_REGISTRY"]
REPO = ENV["DP_REPO"]
TAGS = ENV["DP_TAGS"].split(",")  # oldest first
INDEX_DIGEST = ENV["DP_INDEX_DIGEST"]
CHILDREN = ENV["DP_CHILD_DIGESTS"].split(",")
PLATFORMS = [p.split("/") for p in ENV["DP_PLATFORMS"].split(",")]  # [os, arch(, variant)]
BLOBS = set(ENV["DP_BLOB_DIGESTS"].split(","))
DELETE_REPO = ENV["DP_DELETE_REPO"]
BIG_REPO, BIG_DIGEST = ENV["DP_BIG_REPO"], ENV["DP_BIG_DIGEST"]
RG = ENV.get("AZ_RESOURCE_GROUP", "clients-rg")
AUDIENCE = "https://management.azure.com"
ARM_API_VERSION = "2023-07-01"
TIMEOUT = 60

INDEX_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)


class EmulatorIdentityCredential:
    """A TokenCredential for the emulator's managed identity (App Service flavour:
    GET IDENTITY_ENDPOINT?resource=… with X-IDENTITY-HEADER), recording the scopes asked for."""

    def __init__(self):
        self.scopes = []
        self.calls = 0

    def get_token(self, *scopes, **kwargs):
        self.scopes.extend(scopes)
        self.calls += 1
        assert len(scopes) == 1, scopes
        resource = scopes[0]
        if resource.endswith("/.default"):
            resource = resource[: -len("/.default")]
        r = requests.get(
            ENV["IDENTITY_ENDPOINT"],
            params={"api-version": "2019-08-01", "resource": resource},
            headers={"X-IDENTITY-HEADER": ENV["IDENTITY_HEADER"]},
            verify=ENV["ARM_CA"],
            timeout=30,
        )
        r.raise_for_status()
        body = r.json()
        return AccessToken(body["access_token"], int(body["expires_on"]))


@pytest.fixture(scope="module")
def cred():
    return EmulatorIdentityCredential()


@pytest.fixture(scope="module")
def client(cred):
    # Default transport settings: the proxy, NO_PROXY and the CA bundle come from the
    # environment, as for any user of the SDK.
    return ContainerRegistryClient(
        f"https://{LOGIN_SERVER}", cred, audience=AUDIENCE, logging_enable=DEBUG
    )


def sha256(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def download(client, repo, digest):
    with client.download_blob(repo, digest) as stream:
        return b"".join(stream)


def arm_token():
    return EmulatorIdentityCredential().get_token(AUDIENCE + "/.default").token


def arm_import(target, source_image, mode="Force"):
    """POST importImage through ARM (plain requests); returns the final operation status JSON."""
    url = (
        f"{ENV['ARM_ENDPOINT']}subscriptions/{ENV['AZ_SUBSCRIPTION']}/resourceGroups/{RG}"
        f"/providers/Microsoft.ContainerRegistry/registries/{REGISTRY}/importImage"
    )
    headers = {"Authorization": f"Bearer {arm_token()}"}
    body = {
        "source": {"registryUri": ENV["SRC_ANON_HOST"], "sourceImage": source_image},
        "targetTags": [target],
        "mode": mode,
    }
    r = requests.post(
        url, params={"api-version": ARM_API_VERSION}, json=body, headers=headers,
        verify=ENV["ARM_CA"], timeout=30,
    )
    if r.status_code == 200:  # nothing to copy: answered at once
        return {"status": "Succeeded"}
    assert r.status_code == 202, (r.status_code, r.text)
    status_url = r.headers["Azure-AsyncOperation"]
    deadline = time.monotonic() + TIMEOUT
    while True:
        s = requests.get(status_url, headers=headers, verify=ENV["ARM_CA"], timeout=30)
        assert s.status_code == 200, (s.status_code, s.text)
        v = s.json()
        if v["status"] in ("Succeeded", "Failed", "Canceled"):
            return v
        assert time.monotonic() < deadline, f"import still {v['status']} after {TIMEOUT}s: {v}"
        time.sleep(min(float(s.headers.get("Retry-After", "1")), 0.25))


# ---------------------------------------------------------------------------------------------

def test_login_server_challenges_through_the_proxy():
    """What the SDK meets first: GET /v2/ over the proxy answers ACR's 401 challenge."""
    assert ENV.get("HTTPS_PROXY"), "run.sh sets HTTPS_PROXY to the emulator's proxy"
    r = requests.get(f"https://{LOGIN_SERVER}/v2/", timeout=30)
    assert r.status_code == 401, (r.status_code, r.text)
    assert r.headers["WWW-Authenticate"] == (
        f'Bearer realm="https://{LOGIN_SERVER}/oauth2/token",service="{LOGIN_SERVER}"'
    ), r.headers


def test_list_repository_names(client, cred):
    names = list(client.list_repository_names())
    assert {REPO, DELETE_REPO, BIG_REPO} <= set(names), names
    assert names == sorted(names), names
    # One per page: the SDK follows the Link header.
    assert list(client.list_repository_names(results_per_page=1)) == names
    # The SDK asked the credential for the audience's token (exchanged at /oauth2/exchange).
    assert set(cred.scopes) == {AUDIENCE + "/.default"}, cred.scopes


def test_tags_newest_first(client):
    desc = list(client.list_tag_properties(REPO, order_by=ArtifactTagOrder.LAST_UPDATED_ON_DESCENDING))
    assert [t.name for t in desc] == TAGS[::-1], [(t.name, t.last_updated_on) for t in desc]
    times = [t.last_updated_on for t in desc]
    assert all(a > b for a, b in zip(times, times[1:])), times
    for t in desc:
        assert t.digest == INDEX_DIGEST, (t.name, t.digest)
        # (t.repository_name is None: 1.2.0's list_tag_properties passes repository= where
        # ArtifactTagProperties._from_generated reads repository_name=; a client-side bug.)
        assert (t.can_read, t.can_write, t.can_delete, t.can_list) == (True, True, True, True)
        assert t.created_on <= t.last_updated_on
    asc = list(client.list_tag_properties(REPO, order_by=ArtifactTagOrder.LAST_UPDATED_ON_ASCENDING))
    assert [t.name for t in asc] == TAGS, [t.name for t in asc]
    paged = list(
        client.list_tag_properties(
            REPO, order_by=ArtifactTagOrder.LAST_UPDATED_ON_DESCENDING, results_per_page=1
        )
    )
    assert [t.name for t in paged] == TAGS[::-1]


def test_manifests_list_every_platform(client):
    manifests = {m.digest: m for m in client.list_manifest_properties(REPO)}
    assert set(manifests) == {INDEX_DIGEST, *CHILDREN}, list(manifests)
    for digest, platform in zip(CHILDREN, PLATFORMS):
        m = manifests[digest]
        assert m.operating_system == platform[0], (digest, m.operating_system)
        assert m.architecture == platform[1], (digest, m.architecture)
        assert m.size_in_bytes and m.size_in_bytes > 0, (digest, m.size_in_bytes)
        assert not m.tags, (digest, m.tags)
    index = manifests[INDEX_DIGEST]
    assert sorted(index.tags) == sorted(TAGS), index.tags
    assert index.architecture is None and index.operating_system is None
    # The public model drops `references`; the generated one (cls=) carries related_artifacts.
    raw = {
        m.digest: m
        for m in client.list_manifest_properties(
            REPO, order_by=ArtifactManifestOrder.LAST_UPDATED_ON_DESCENDING, cls=lambda items: items
        )
    }
    related = raw[INDEX_DIGEST].related_artifacts
    assert [r.digest for r in related] == CHILDREN, related
    for r, platform in zip(related, PLATFORMS):
        assert (r.operating_system, r.architecture) == (platform[0], platform[1]), r
    for d in CHILDREN:
        assert not raw[d].related_artifacts, raw[d].related_artifacts


def test_manifest_properties_by_tag(client):
    props = client.get_manifest_properties(REPO, TAGS[0])
    assert props.digest == INDEX_DIGEST
    assert sorted(props.tags) == sorted(TAGS)
    assert props.repository_name == REPO
    child = client.get_manifest_properties(REPO, CHILDREN[0])
    assert (child.operating_system, child.architecture) == (PLATFORMS[0][0], PLATFORMS[0][1])
    repo = client.get_repository_properties(REPO)
    assert repo.name == REPO
    assert repo.tag_count == len(TAGS), repo.tag_count
    assert repo.manifest_count == 1 + len(CHILDREN), repo.manifest_count


def test_locked_tag_refuses_an_import(client):
    tag = TAGS[-1]
    single = ENV["SRC_SINGLE"]
    props = client.update_tag_properties(REPO, tag, can_write=False)
    assert props.can_write is False and props.can_delete is True, vars(props)
    assert client.get_tag_properties(REPO, tag).can_write is False
    try:
        status = arm_import(f"{REPO}:{tag}", single, mode="Force")
        print("import into the locked tag:", json.dumps(status))
        assert status["status"] == "Failed", status
        assert status["error"]["code"] == "Conflict", status
        assert "locked" in status["error"]["message"], status
        assert client.get_tag_properties(REPO, tag).digest == INDEX_DIGEST
    finally:
        props = client.update_tag_properties(REPO, tag, can_write=True)
    assert props.can_write is True, vars(props)
    # Unlocked: the same import now moves the tag.
    status = arm_import(f"{REPO}:{tag}", single, mode="Force")
    assert status["status"] == "Succeeded", status
    assert client.get_tag_properties(REPO, tag).digest == ENV["SRC_SINGLE_DIGEST"]


def test_get_manifest_and_download_blobs(client):
    top = client.get_manifest(REPO, TAGS[0])
    assert top.digest == INDEX_DIGEST
    assert top.media_type in INDEX_TYPES, top.media_type
    assert [m["digest"] for m in top.manifest["manifests"]] == CHILDREN
    by_digest = client.get_manifest(REPO, INDEX_DIGEST)
    assert by_digest.digest == INDEX_DIGEST and by_digest.manifest == top.manifest
    for digest, platform, desc in zip(CHILDREN, PLATFORMS, top.manifest["manifests"]):
        assert desc["platform"]["architecture"] == platform[1]
        child = client.get_manifest(REPO, digest)
        assert child.digest == digest
        config = child.manifest["config"]
        layers = child.manifest["layers"]
        assert {config["digest"], *(l["digest"] for l in layers)} <= BLOBS
        data = download(client, REPO, config["digest"])
        assert sha256(data) == config["digest"] and len(data) == config["size"]
        cfg = json.loads(data)
        assert (cfg["os"], cfg["architecture"]) == (platform[0], platform[1]), cfg
    # The largest layer of the last child (ranged reads, 206).
    layer = max(layers, key=lambda l: l["size"])
    data = download(client, REPO, layer["digest"])
    assert len(data) == layer["size"] and sha256(data) == layer["digest"]


def test_download_blob_in_ranged_chunks(client):
    """A layer over the SDK's 4 MiB chunk: several 206 answers to Range requests, the last one
    asking past the end."""
    m = client.get_manifest(BIG_REPO, "v1")
    assert m.digest == BIG_DIGEST
    layer = max(m.manifest["layers"], key=lambda l: l["size"])
    assert layer["size"] > 4 * 1024 * 1024, layer
    data = download(client, BIG_REPO, layer["digest"])
    assert len(data) == layer["size"] and sha256(data) == layer["digest"]


def test_delete_tag(client):
    gone = TAGS[-1]
    client.delete_tag(REPO, gone)
    left = [t.name for t in client.list_tag_properties(REPO)]
    assert left == TAGS[:-1], left
    with pytest.raises(ResourceNotFoundError):
        client.get_tag_properties(REPO, gone)
    # The other tags still point at the index.
    assert client.get_manifest_properties(REPO, TAGS[0]).digest == INDEX_DIGEST


def test_delete_repository(client):
    client.delete_repository(DELETE_REPO)
    names = list(client.list_repository_names())
    assert DELETE_REPO not in names, names
    assert REPO in names, names
    with pytest.raises(ResourceNotFoundError):
        client.get_repository_properties(DELETE_REPO)
    # Deleting it again is not an error for the SDK (404 is accepted).
    client.delete_repository(DELETE_REPO)
