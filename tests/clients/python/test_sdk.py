"""acr-import driven by the real Python SDK (azure-mgmt-containerregistry + azure-core polling).

Run through ../run.sh, which sets the environment:
  ARM_ENDPOINT        https://127.0.0.1:PORT/ (the emulator's HTTPS listener)
  ARM_CA              PEM of the CA that signed its certificate
  AZ_SUBSCRIPTION     subscription id, AZ_RESOURCE_GROUP resource group
  SRC_HOST            htpasswd-protected source registry (127.0.0.1:PORT), SRC_USER / SRC_PASS
  SRC_ANON_HOST       anonymous source registry holding the same images
  SRC_SINGLE / SRC_SINGLE_DIGEST   "repo:tag" of a single-manifest image and its digest
  SRC_MULTI / SRC_MULTI_DIGEST     "repo:tag" of a 3-platform index and its digest
  BACKEND_URL         the emulator's backend registry (optional: content checks)
  ACR_CLIENTS_RUN     suffix of the registry names (pytarget<RUN>, pysecond<RUN>)
Set ACR_CLIENTS_DEBUG=1 for azure-core's HTTP logging (logging_enable=True, DEBUG level).

The SDK client keeps its default polling_interval (30 s): it is only used when a poll response
carries no Retry-After, and test_import_polls_at_retry_after makes that visible.
"""
import json
import logging
import os
import time
import urllib.error
import urllib.request

import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import HttpResponseError
from azure.mgmt.containerregistry import ContainerRegistryManagementClient

ENV = os.environ
DEBUG = ENV.get("ACR_CLIENTS_DEBUG") == "1"
if DEBUG:
    logging.basicConfig(level=logging.DEBUG)

RUN = ENV.get("ACR_CLIENTS_RUN", "0")
RG = ENV.get("AZ_RESOURCE_GROUP", "clients-rg")
TARGET = f"pytarget{RUN}"
SECOND = f"pysecond{RUN}"
SINGLE, SINGLE_DIGEST = ENV["SRC_SINGLE"], ENV["SRC_SINGLE_DIGEST"]
MULTI, MULTI_DIGEST = ENV["SRC_MULTI"], ENV["SRC_MULTI_DIGEST"]
SRC_HOST, SRC_USER, SRC_PASS = ENV["SRC_HOST"], ENV["SRC_USER"], ENV["SRC_PASS"]
SRC_ANON_HOST = ENV["SRC_ANON_HOST"]
TIMEOUT = 120
# An import of these small images takes well under a second; with Retry-After: 1 honoured on
# every poll the SDK returns within a few seconds. 30 s is the SDK's fallback interval.
FAST = float(ENV.get("ACR_CLIENTS_FAST_IMPORT_SECS", "10"))


def fake_jwt():
    import base64

    def b64(d):
        return base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()

    now = int(time.time())
    return b64({"alg": "none", "typ": "JWT"}) + "." + b64(
        {"tid": "00000000-0000-4000-8000-000000000001", "oid": "py", "iat": now, "exp": now + 3600}
    ) + "."


class StaticCredential:
    """Any TokenCredential works against the emulator; this one records the scopes asked for."""

    def __init__(self):
        self.scopes = []

    def get_token(self, *scopes, **kwargs):
        self.scopes.extend(scopes)
        return AccessToken(ENV.get("ARM_TOKEN") or fake_jwt(), int(time.time()) + 3600)


@pytest.fixture(scope="module")
def cred():
    return StaticCredential()


@pytest.fixture(scope="module")
def client(cred):
    # The CA is given explicitly here; run.sh also points REQUESTS_CA_BUNDLE at a bundle with it
    # (test_env_ca_bundle covers that path).
    return ContainerRegistryManagementClient(
        cred,
        ENV["AZ_SUBSCRIPTION"],
        base_url=ENV["ARM_ENDPOINT"],
        connection_verify=ENV["ARM_CA"],
        logging_enable=DEBUG,
    )


def backend_digest(registry, repo, ref):
    """Digest of registry/repo:ref in the emulator's backend, None if absent, "unchecked" without BACKEND_URL."""
    base = ENV.get("BACKEND_URL")
    if not base:
        return "unchecked"
    req = urllib.request.Request(
        f"{base}/v2/{registry.lower()}/{repo}/manifests/{ref}",
        method="HEAD",
        headers={"Accept": ",".join([
            "application/vnd.oci.image.index.v1+json",
            "application/vnd.oci.image.manifest.v1+json",
            "application/vnd.docker.distribution.manifest.list.v2+json",
            "application/vnd.docker.distribution.manifest.v2+json",
        ])},
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=10) as r:
            return r.headers.get("Docker-Content-Digest")
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return None
        raise


def assert_backend(registry, repo, ref, digest):
    got = backend_digest(registry, repo, ref)
    if got != "unchecked":
        assert got == digest, f"{registry}/{repo}:{ref} is {got}, expected {digest}"


def import_image(client, registry, body):
    poller = client.registries.begin_import_image(RG, registry, body)
    return poller.result(timeout=TIMEOUT), poller


def repo_of(image):
    return image.split(":")[0].split("@")[0]


# ---------------------------------------------------------------------------------------------

def test_create_registries(client):
    for name, sku in ((TARGET, "Premium"), (SECOND, "Basic")):
        reg = client.registries.begin_create(
            RG, name, {"location": "eastus", "sku": {"name": sku}, "tags": {"suite": "python"}}
        ).result(timeout=TIMEOUT)
        assert reg.name == name
        assert reg.sku.name == sku
        assert reg.provisioning_state == "Succeeded"
        assert reg.login_server and reg.login_server.startswith(name.lower() + ".")
        assert reg.id.lower() == (
            f"/subscriptions/{ENV['AZ_SUBSCRIPTION']}/resourceGroups/{RG}"
            f"/providers/Microsoft.ContainerRegistry/registries/{name}"
        ).lower()
    got = client.registries.get(RG, TARGET)
    assert got.sku.name == "Premium" and got.location == "eastus"
    names = {r.name for r in client.registries.list()}
    assert {TARGET, SECOND} <= names, names
    names = {r.name for r in client.registries.list_by_resource_group(RG)}
    assert {TARGET, SECOND} <= names, names


def test_update_and_check_name(client):
    """PATCH (Registries_Update, an LRO the SDK accepts as 200/201) and checkNameAvailability."""
    reg = client.registries.begin_update(
        RG, SECOND, {"tags": {"suite": "python", "patched": "yes"}, "properties": {"adminUserEnabled": True}}
    ).result(timeout=TIMEOUT)
    assert reg.tags == {"suite": "python", "patched": "yes"}, reg.tags
    assert reg.admin_user_enabled is True
    assert reg.sku.name == "Basic" and reg.provisioning_state == "Succeeded"
    taken = client.registries.check_name_availability(
        {"name": TARGET, "type": "Microsoft.ContainerRegistry/registries"}
    )
    assert taken.name_available is False and taken.reason == "AlreadyExists", taken
    free = client.registries.check_name_availability(
        {"name": f"pyfree{RUN}x", "type": "Microsoft.ContainerRegistry/registries"}
    )
    assert free.name_available is True, free


def test_token_scope(cred):
    # The SDK asks for <credential_scopes>: by default the public cloud's ARM audience.
    assert cred.scopes, "the SDK never asked for a token"


def test_import_registry_uri_with_credentials(client):
    result, poller = import_image(client, TARGET, {
        "source": {
            "registryUri": SRC_HOST,
            "sourceImage": MULTI,
            "credentials": {"username": SRC_USER, "password": SRC_PASS},
        },
        "targetTags": ["py/multi:v1"],
        "untaggedTargetRepositories": ["py/multi-untagged"],
        "mode": "Force",
    })
    assert result is None
    assert poller.status().lower() == "succeeded"
    assert_backend(TARGET, "py/multi", "v1", MULTI_DIGEST)
    assert_backend(TARGET, "py/multi-untagged", MULTI_DIGEST, MULTI_DIGEST)


def test_import_polls_at_retry_after(client):
    """With the SDK's default polling_interval (30 s), an import of a tiny image must still
    return quickly: every poll response that says "still running" has to carry Retry-After."""
    start = time.monotonic()
    import_image(client, TARGET, {
        "source": {"registryUri": SRC_ANON_HOST, "sourceImage": MULTI},
        "targetTags": ["py/timed:v1"],
    })
    took = time.monotonic() - start
    assert took < FAST, (
        f"begin_import_image(...).result() took {took:.1f}s: a poll response without "
        "Retry-After makes azure-core wait polling_interval (30 s)"
    )


def test_import_by_digest_anonymous_source(client):
    import_image(client, TARGET, {
        "source": {"registryUri": SRC_ANON_HOST, "sourceImage": f"{repo_of(SINGLE)}@{SINGLE_DIGEST}"},
        "targetTags": ["py/single:bydigest"],
    })
    assert_backend(TARGET, "py/single", "bydigest", SINGLE_DIGEST)


def test_import_resource_id_source(client):
    source_id = client.registries.get(RG, TARGET).id
    import_image(client, SECOND, {
        "source": {"resourceId": source_id, "sourceImage": "py/multi:v1"},
        "targetTags": ["copied/multi:v1"],
    })
    assert_backend(SECOND, "copied/multi", "v1", MULTI_DIGEST)


def test_import_untagged_only(client):
    import_image(client, SECOND, {
        "source": {
            "registryUri": SRC_HOST,
            "sourceImage": SINGLE,
            "credentials": {"username": SRC_USER, "password": SRC_PASS},
        },
        "untaggedTargetRepositories": ["py/untagged-only"],
    })
    assert_backend(SECOND, "py/untagged-only", SINGLE_DIGEST, SINGLE_DIGEST)
    assert backend_digest(SECOND, "py/untagged-only", SINGLE.split(":")[1]) in (None, "unchecked")


def test_force_overwrites_tag(client):
    src = {"registryUri": SRC_ANON_HOST}
    import_image(client, TARGET, {"source": {**src, "sourceImage": SINGLE}, "targetTags": ["py/force:v1"]})
    assert_backend(TARGET, "py/force", "v1", SINGLE_DIGEST)
    import_image(client, TARGET, {
        "source": {**src, "sourceImage": MULTI}, "targetTags": ["py/force:v1"], "mode": "Force",
    })
    assert_backend(TARGET, "py/force", "v1", MULTI_DIGEST)


def test_noforce_conflict_raises(client):
    src = {"registryUri": SRC_ANON_HOST}
    import_image(client, TARGET, {"source": {**src, "sourceImage": SINGLE}, "targetTags": ["py/conflict:v1"]})
    with pytest.raises(HttpResponseError) as info:
        import_image(client, TARGET, {
            "source": {**src, "sourceImage": MULTI}, "targetTags": ["py/conflict:v1"], "mode": "NoForce",
        })
    err = info.value
    text = str(err)
    print("NoForce conflict surfaced as:", type(err).__name__, repr(text))
    assert "Conflict" in text, text
    assert "already exists in target registry" in text, text
    assert err.error is not None and err.error.code == "Conflict", text
    # Nothing moved.
    assert_backend(TARGET, "py/conflict", "v1", SINGLE_DIGEST)


def test_wrong_credentials_fail(client):
    with pytest.raises(HttpResponseError) as info:
        import_image(client, TARGET, {
            "source": {
                "registryUri": SRC_HOST,
                "sourceImage": SINGLE,
                "credentials": {"username": SRC_USER, "password": "not-the-password"},
            },
            "targetTags": ["py/denied:v1"],
        })
    text = str(info.value)
    print("bad credentials surfaced as:", repr(text))
    assert info.value.error is not None and info.value.error.code, text
    assert SRC_PASS not in text and "not-the-password" not in text, text
    assert backend_digest(TARGET, "py/denied", "v1") in (None, "unchecked")


def test_invalid_body_is_a_synchronous_error(client):
    with pytest.raises(HttpResponseError) as info:
        client.registries.begin_import_image(RG, TARGET, {"source": {"registryUri": SRC_ANON_HOST}})
    assert info.value.status_code == 400, str(info.value)
    assert info.value.error is not None and info.value.error.code, str(info.value)


def test_missing_registry_is_not_found(client):
    from azure.core.exceptions import ResourceNotFoundError

    with pytest.raises(ResourceNotFoundError):
        client.registries.get(RG, f"nosuch{RUN}")
    with pytest.raises(HttpResponseError) as info:
        client.registries.begin_import_image(RG, f"nosuch{RUN}", {
            "source": {"registryUri": SRC_ANON_HOST, "sourceImage": SINGLE}, "targetTags": ["x:y"],
        }).result(timeout=TIMEOUT)
    assert info.value.status_code == 404, str(info.value)


def test_env_ca_bundle():
    """The default connection_verify=True path: requests reads REQUESTS_CA_BUNDLE (set by run.sh)."""
    c = ContainerRegistryManagementClient(
        StaticCredential(), ENV["AZ_SUBSCRIPTION"], base_url=ENV["ARM_ENDPOINT"], logging_enable=DEBUG
    )
    assert c.registries.get(RG, TARGET).name == TARGET


def test_plain_http_is_refused_by_the_sdk():
    """Documents the client rule that forces HTTPS on the emulator: no bearer token over http."""
    from azure.core.exceptions import ServiceRequestError

    c = ContainerRegistryManagementClient(
        StaticCredential(), ENV["AZ_SUBSCRIPTION"], base_url="http://127.0.0.1:9/"
    )
    with pytest.raises(ServiceRequestError, match="non-TLS"):
        c.registries.get(RG, TARGET)


@pytest.mark.skipif(not ENV.get("IDENTITY_ENDPOINT"), reason="no IDENTITY_ENDPOINT")
def test_managed_identity_credential_from_azure_identity():
    """azure-identity's ManagedIdentityCredential (App Service flavour: IDENTITY_ENDPOINT +
    IDENTITY_HEADER) against the emulator's token endpoint, then an ARM call with that token."""
    from azure.identity import ManagedIdentityCredential

    scope = ENV["ARM_ENDPOINT"].rstrip("/") + "//.default"
    mi = ManagedIdentityCredential()
    tok = mi.get_token(scope)
    assert tok.token.count(".") == 2 and tok.expires_on > time.time(), tok
    c = ContainerRegistryManagementClient(
        mi, ENV["AZ_SUBSCRIPTION"], base_url=ENV["ARM_ENDPOINT"], credential_scopes=[scope],
        logging_enable=DEBUG,
    )
    assert c.registries.get(RG, TARGET).name == TARGET
