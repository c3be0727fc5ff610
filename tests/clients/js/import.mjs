// acr-import driven by the real JS SDK (@azure/arm-containerregistry 12 + @azure/core-lro).
//
// Run through ../run.sh (same environment as python/test_sdk.py; NODE_EXTRA_CA_CERTS must
// name the emulator's CA before node starts). Uses node's built-in test runner:
//   node --test import.mjs
// ACR_CLIENTS_DEBUG=1 turns on the SDK's HTTP logging (run.sh sets AZURE_LOG_LEVEL=verbose).
import { test, before } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { ContainerRegistryManagementClient } from "@azure/arm-containerregistry";

const ENV = process.env;
const RUN = ENV.ACR_CLIENTS_RUN ?? "0";
const RG = ENV.AZ_RESOURCE_GROUP ?? "clients-rg";
const TARGET = `jstarget${RUN}`;
const SECOND = `jssecond${RUN}`;
const { SRC_HOST, SRC_USER, SRC_PASS, SRC_ANON_HOST, SRC_SINGLE, SRC_SINGLE_DIGEST, SRC_MULTI, SRC_MULTI_DIGEST } = ENV;
const ENDPOINT = ENV.ARM_ENDPOINT.replace(/\/+$/, "");

function b64(obj) {
  return Buffer.from(JSON.stringify(obj)).toString("base64url");
}
const scopesAsked = [];
const credential = {
  async getToken(scopes) {
    scopesAsked.push(...(Array.isArray(scopes) ? scopes : [scopes]));
    const now = Math.floor(Date.now() / 1000);
    const token = ENV.ARM_TOKEN ?? `${b64({ alg: "none", typ: "JWT" })}.${b64({ tid: "00000000-0000-4000-8000-000000000001", oid: "js", iat: now, exp: now + 3600 })}.`;
    return { token, expiresOnTimestamp: (now + 3600) * 1000 };
  },
};

const client = new ContainerRegistryManagementClient(credential, ENV.AZ_SUBSCRIPTION, { endpoint: ENDPOINT });

/** Digest of registry/repo:ref in the backend (HEAD over plain http), or null; "unchecked" without BACKEND_URL. */
function backendDigest(registry, repo, ref) {
  if (!ENV.BACKEND_URL) return Promise.resolve("unchecked");
  const url = new URL(`${ENV.BACKEND_URL}/v2/${registry.toLowerCase()}/${repo}/manifests/${ref}`);
  return new Promise((resolve, reject) => {
    const req = http.request(url, {
      method: "HEAD",
      headers: {
        accept: [
          "application/vnd.oci.image.index.v1+json",
          "application/vnd.oci.image.manifest.v1+json",
          "application/vnd.docker.distribution.manifest.list.v2+json",
          "application/vnd.docker.distribution.manifest.v2+json",
        ].join(","),
      },
    }, (res) => {
      res.resume();
      if (res.statusCode === 404) resolve(null);
      else if (res.statusCode === 200) resolve(res.headers["docker-content-digest"]);
      else reject(new Error(`HEAD ${url}: ${res.statusCode}`));
    });
    req.on("error", reject);
    req.end();
  });
}
async function assertBackend(registry, repo, ref, digest) {
  const got = await backendDigest(registry, repo, ref);
  if (got !== "unchecked") assert.equal(got, digest, `${registry}/${repo}:${ref}`);
}

before(async () => {
  for (const [name, sku] of [[TARGET, "Standard"], [SECOND, "Basic"]]) {
    const reg = await client.registries.beginCreateAndWait(RG, name, { location: "westeurope", sku: { name: sku } });
    assert.equal(reg.name, name);
    assert.equal(reg.sku.name, sku);
    assert.equal(reg.provisioningState, "Succeeded");
    assert.ok(reg.loginServer?.startsWith(`${name.toLowerCase()}.`), `loginServer ${reg.loginServer}`);
  }
});

test("token scope is <endpoint>/.default", () => {
  assert.ok(scopesAsked.includes(`${ENDPOINT}/.default`), JSON.stringify(scopesAsked));
});

test("get and list registries", async () => {
  const reg = await client.registries.get(RG, TARGET);
  assert.equal(reg.location, "westeurope");
  const names = [];
  for await (const r of client.registries.list()) names.push(r.name);
  assert.ok(names.includes(TARGET) && names.includes(SECOND), names.join(","));
});

test("PATCH and checkNameAvailability", async () => {
  const reg = await client.registries.beginUpdateAndWait(RG, SECOND, { tags: { suite: "js" }, adminUserEnabled: true });
  assert.deepEqual(reg.tags, { suite: "js" });
  assert.equal(reg.adminUserEnabled, true);
  const taken = await client.registries.checkNameAvailability({ name: TARGET, type: "Microsoft.ContainerRegistry/registries" });
  assert.equal(taken.nameAvailable, false, JSON.stringify(taken));
  const free = await client.registries.checkNameAvailability({ name: `jsfree${RUN}x`, type: "Microsoft.ContainerRegistry/registries" });
  assert.equal(free.nameAvailable, true, JSON.stringify(free));
});

test("import from a registryUri with credentials (multi-arch, tag + untagged)", async () => {
  await client.registries.beginImportImageAndWait(RG, TARGET, {
    source: { registryUri: SRC_HOST, sourceImage: SRC_MULTI, credentials: { username: SRC_USER, password: SRC_PASS } },
    targetTags: ["js/multi:v1"],
    untaggedTargetRepositories: ["js/multi-untagged"],
    mode: "Force",
  });
  await assertBackend(TARGET, "js/multi", "v1", SRC_MULTI_DIGEST);
  await assertBackend(TARGET, "js/multi-untagged", SRC_MULTI_DIGEST, SRC_MULTI_DIGEST);
});

test("import from a resourceId source", async () => {
  const source = await client.registries.get(RG, TARGET);
  await client.registries.beginImportImageAndWait(RG, SECOND, {
    source: { resourceId: source.id, sourceImage: "js/multi:v1" },
    targetTags: ["copied/multi:v1"],
  });
  await assertBackend(SECOND, "copied/multi", "v1", SRC_MULTI_DIGEST);
});

test("beginImportImage + pollUntilDone, anonymous source", async () => {
  const poller = await client.registries.beginImportImage(RG, TARGET, {
    source: { registryUri: SRC_ANON_HOST, sourceImage: SRC_SINGLE },
    targetTags: ["js/single:v1"],
  });
  await poller.pollUntilDone();
  assert.equal(poller.isDone(), true);
  await assertBackend(TARGET, "js/single", "v1", SRC_SINGLE_DIGEST);
});

test("NoForce onto an existing tag fails with Conflict", async () => {
  await assert.rejects(
    client.registries.beginImportImageAndWait(RG, TARGET, {
      source: { registryUri: SRC_ANON_HOST, sourceImage: SRC_MULTI },
      targetTags: ["js/single:v1"],
      mode: "NoForce",
    }),
    (err) => {
      console.log(`NoForce conflict surfaced as: ${err.name}: ${err.message}`);
      assert.match(err.message, /Conflict/);
      assert.match(err.message, /already exists in target registry/);
      return true;
    },
  );
  await assertBackend(TARGET, "js/single", "v1", SRC_SINGLE_DIGEST);
});

test("an invalid body is rejected synchronously with an ARM error", async () => {
  await assert.rejects(
    client.registries.beginImportImageAndWait(RG, TARGET, { source: { registryUri: SRC_ANON_HOST } }),
    (err) => {
      assert.equal(err.name, "RestError", `${err.name}: ${err.message}`);
      assert.equal(err.statusCode, 400);
      assert.ok(err.code, "no error code");
      return true;
    },
  );
});
