// Seeds a container on a local Azurite with a few files, through the Azure Storage SDK and the
// emulator's well-known development account.
//
//   node scripts/demo-seed.mjs BLOB_ENDPOINT [CONTAINER]            demo content (scripts/demo.sh)
//   node scripts/demo-seed.mjs BLOB_ENDPOINT CONTAINER --random NAME SIZE_BYTES
//                                   one random blob of SIZE_BYTES, uploaded in 8 MiB blocks
//                                   (Put Block + Put Block List) from memory (scripts/bench.sh)
//   node scripts/demo-seed.mjs BLOB_ENDPOINT CONTAINER --sas PERMISSIONS HOURS
//                                   prints a container SAS URL made by the SDK (scripts/bench.sh)
//   node scripts/demo-seed.mjs BLOB_ENDPOINT CONTAINER --policy ID PERMISSIONS HOURS
//                                   sets the container's only stored access policy (tests)
//   node scripts/demo-seed.mjs BLOB_ENDPOINT CONTAINER --many PREFIX COUNT
//                                   COUNT empty blobs PREFIX00000… (a large directory, bench.sh)
//   node scripts/demo-seed.mjs BLOB_ENDPOINT CONTAINER --raw-put NAME SIZE_BYTES CONCURRENCY
//                                   uploads SIZE_BYTES of random data as Put Blocks of 8 MiB,
//                                   CONCURRENCY at once, then one Put Block List, and prints the
//                                   seconds it took: the raw baseline of a write (bench.sh)
//   node scripts/demo-seed.mjs BLOB_ENDPOINT CONTAINER --download PREFIX DIR
//                                   every blob under PREFIX (directory markers aside) into
//                                   DIR/NAME-after-PREFIX, and prints each blob name (bench.sh's
//                                   write-back checks)
//
// BLOB_ENDPOINT is the account URL, e.g. http://127.0.0.1:10000/devstoreaccount1.
import { randomBytes } from "node:crypto";
import { BlobServiceClient, ContainerSASPermissions } from "@azure/storage-blob";

const ACCOUNT = "devstoreaccount1";
// The emulator's public, well-known development key (not a secret).
const KEY =
  "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

const [endpoint, containerName = "demo", mode, ...rest] = process.argv.slice(2);
if (!endpoint) {
  console.error("usage: node scripts/demo-seed.mjs BLOB_ENDPOINT [CONTAINER] [--random NAME SIZE_BYTES | --sas PERMISSIONS HOURS]");
  process.exit(2);
}

const connectionString =
  `DefaultEndpointsProtocol=http;AccountName=${ACCOUNT};AccountKey=${KEY};BlobEndpoint=${endpoint};`;
const service = BlobServiceClient.fromConnectionString(connectionString);
const container = service.getContainerClient(containerName);
await container.createIfNotExists();

if (mode === "--sas") {
  const [permissions = "rl", hours = "2"] = rest;
  const url = await container.generateSasUrl({
    permissions: ContainerSASPermissions.parse(permissions),
    expiresOn: new Date(Date.now() + Number(hours) * 3600 * 1000),
  });
  console.log(url);
  process.exit(0);
}

if (mode === "--policy") {
  const [id, permissions, hours = "2"] = rest;
  if (!id || !permissions) {
    console.error("--policy needs ID and PERMISSIONS");
    process.exit(2);
  }
  await container.setAccessPolicy(undefined, [
    {
      id,
      accessPolicy: {
        permissions,
        startsOn: new Date(Date.now() - 60 * 1000),
        expiresOn: new Date(Date.now() + Number(hours) * 3600 * 1000),
      },
    },
  ]);
  process.exit(0);
}

async function put(name, data, contentType = "application/octet-stream") {
  const body = typeof data === "string" ? Buffer.from(data, "utf8") : data;
  await container
    .getBlockBlobClient(name)
    .uploadData(body, { blobHTTPHeaders: { blobContentType: contentType } });
  console.log(`  ${name} (${body.length} bytes)`);
}

if (mode === "--many") {
  const [prefix, countText] = rest;
  const count = Number(countText);
  if (!prefix || !Number.isSafeInteger(count) || count < 0) {
    console.error("--many needs PREFIX and COUNT");
    process.exit(2);
  }
  const width = String(Math.max(count - 1, 0)).length;
  let next = 0;
  async function worker() {
    while (next < count) {
      const i = next++;
      await container.getBlockBlobClient(prefix + String(i).padStart(width, "0")).uploadData(Buffer.alloc(0));
    }
  }
  await Promise.all(Array.from({ length: 32 }, worker));
  console.error(`  ${count} empty blobs ${prefix}*`);
  process.exit(0);
}

if (mode === "--download") {
  const [prefix, dir] = rest;
  if (!prefix || !dir) {
    console.error("--download needs PREFIX and DIR");
    process.exit(2);
  }
  const { mkdir } = await import("node:fs/promises");
  const { dirname, join } = await import("node:path");
  const names = [];
  // Directory markers (hdi_isfolder) are not files: skipped.
  for await (const b of container.listBlobsFlat({ prefix, includeMetadata: true })) {
    if (b.metadata?.hdi_isfolder !== "true") names.push(b.name);
  }
  let next = 0;
  async function worker() {
    while (next < names.length) {
      const name = names[next++];
      const path = join(dir, name.slice(prefix.length));
      await mkdir(dirname(path), { recursive: true });
      await container.getBlobClient(name).downloadToFile(path);
    }
  }
  await Promise.all(Array.from({ length: 16 }, worker));
  for (const name of names) console.log(name);
  process.exit(0);
}

if (mode === "--raw-put") {
  const [name, sizeText, concurrencyText] = rest;
  const size = Number(sizeText);
  const concurrency = Number(concurrencyText);
  if (!name || !Number.isSafeInteger(size) || size < 0 || !(concurrency >= 1)) {
    console.error("--raw-put needs NAME, SIZE_BYTES and CONCURRENCY");
    process.exit(2);
  }
  const data = randomBytes(size);
  const started = process.hrtime.bigint();
  await container.getBlockBlobClient(name).uploadData(data, {
    blockSize: 8 * 1024 * 1024,
    maxSingleShotSize: 0,
    concurrency,
  });
  console.log((Number(process.hrtime.bigint() - started) / 1e9).toFixed(3));
  process.exit(0);
}

if (mode === "--random") {
  const [name, sizeText] = rest;
  const size = Number(sizeText);
  if (!name || !Number.isSafeInteger(size) || size < 0) {
    console.error("--random needs NAME and SIZE_BYTES");
    process.exit(2);
  }
  const blob = container.getBlockBlobClient(name);
  const blockSize = 8 * 1024 * 1024;
  const ids = [];
  for (let off = 0, i = 0; off < size; off += blockSize, i++) {
    const n = Math.min(blockSize, size - off);
    const id = Buffer.from(String(i).padStart(8, "0")).toString("base64");
    await blob.stageBlock(id, randomBytes(n), n);
    ids.push(id);
  }
  await blob.commitBlockList(ids);
  const props = await blob.getProperties();
  console.error(`  ${name} (${props.contentLength} bytes, ${ids.length} blocks)`);
  process.exit(0);
}

console.log(`seeding container "${containerName}" at ${endpoint}:`);
await put(
  "README.txt",
  [
    "Hello from blobmount!",
    "",
    "This directory is an Azure Blob Storage container (here: the Azurite emulator),",
    "mounted read-only with a SAS that allows read and list (sp=rl).",
    "",
    "Try: ls -lR, cat docs/guide.md, sha256sum big/random-20MiB.bin",
    "",
  ].join("\n"),
  "text/plain",
);
await put(
  "docs/guide.md",
  "# Guide\n\nBlobs whose names contain '/' show up as directories.\n",
  "text/markdown",
);
await put("docs/nested/deeper/note.txt", "Three levels down.\n", "text/plain");
await put(
  "data/numbers.csv",
  "n,square\n" + Array.from({ length: 100 }, (_, i) => `${i},${i * i}`).join("\n") + "\n",
  "text/csv",
);
await put("odd names/ü #1 + more.txt", "Spaces, unicode and punctuation in names work too.\n", "text/plain");
await put("big/random-20MiB.bin", randomBytes(20 * 1024 * 1024));
console.log("done");
