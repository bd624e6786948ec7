#!/usr/bin/env node
// Compile crossdvp's Solidity sources and the genuine Chainlink KeystoneForwarder with solc-js
// (pinned by package-lock.json) and write one JSON artifact per contract (ABI + bytecode) to
// src/crossdvp/chain/artifacts/. The artifacts are committed; `--check` recompiles in memory and
// exits 1 if any committed artifact differs by a single byte (tests/chain/test_artifacts.py runs it).
//
// Usage: node scripts/compile.js [--check]
"use strict";

const fs = require("fs");
const path = require("path");
const solc = require("solc");

const ROOT = path.resolve(__dirname, "..");
const OUT_DIR = path.join(ROOT, "src", "crossdvp", "chain", "artifacts");
const NODE_MODULES = path.join(ROOT, "node_modules");

// Import prefixes -> directories. Chainlink's keystone sources import OpenZeppelin by versioned
// names; those resolve to npm aliases of exactly those versions.
const REMAPPINGS = [
  ["@openzeppelin/contracts@4.8.3/", path.join(NODE_MODULES, "@openzeppelin", "contracts-4.8.3") + "/"],
  ["@openzeppelin/contracts@5.0.2/", path.join(NODE_MODULES, "@openzeppelin", "contracts-5.0.2") + "/"],
  ["@openzeppelin/contracts/", path.join(NODE_MODULES, "@openzeppelin", "contracts") + "/"],
  ["@chainlink/contracts/", path.join(NODE_MODULES, "@chainlink", "contracts") + "/"],
  ["contracts/", path.join(ROOT, "contracts") + "/"],
];

// Compiler settings are part of the artifact's identity: change them only with a recompile.
const SETTINGS = {
  optimizer: { enabled: true, runs: 10000 },
  evmVersion: "cancun",
  outputSelection: { "*": { "*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"] } },
};

// Entry points: every contracts/*.sol plus the forwarder from the npm package.
function entrySources() {
  const ours = fs
    .readdirSync(path.join(ROOT, "contracts"))
    .filter((f) => f.endsWith(".sol"))
    .sort()
    .map((f) => `contracts/${f}`);
  return [...ours, "@chainlink/contracts/src/v0.8/keystone/KeystoneForwarder.sol"];
}

function resolvePath(unitName) {
  for (const [prefix, dir] of REMAPPINGS) {
    if (unitName.startsWith(prefix)) return dir + unitName.slice(prefix.length);
  }
  return null;
}

function findImports(unitName) {
  const file = resolvePath(unitName);
  if (file === null || !fs.existsSync(file)) return { error: `cannot resolve import ${unitName}` };
  return { contents: fs.readFileSync(file, "utf8") };
}

function compile() {
  const sources = {};
  for (const unit of entrySources()) sources[unit] = { content: fs.readFileSync(resolvePath(unit), "utf8") };
  const input = { language: "Solidity", sources, settings: SETTINGS };
  const output = JSON.parse(solc.compile(JSON.stringify(input), { import: findImports }));
  const errors = (output.errors || []).filter((e) => e.severity === "error");
  for (const e of output.errors || []) {
    if (e.severity !== "error" && !e.sourceLocation?.file?.startsWith("@")) process.stderr.write(e.formattedMessage);
  }
  if (errors.length) {
    for (const e of errors) process.stderr.write(e.formattedMessage);
    process.exit(2);
  }
  // Artifacts for our own contracts and the forwarder; libraries and interfaces are left out
  // (interfaces have no bytecode; abstract contracts are not deployed).
  const wanted = new Set(entrySources());
  const artifacts = {};
  for (const [unit, contracts] of Object.entries(output.contracts)) {
    if (!wanted.has(unit)) continue;
    for (const [name, c] of Object.entries(contracts)) {
      if (!c.evm.bytecode.object) continue;
      artifacts[name] = {
        contractName: name,
        sourceName: unit,
        compiler: { version: solc.version(), settings: { optimizer: SETTINGS.optimizer, evmVersion: SETTINGS.evmVersion } },
        abi: c.abi,
        bytecode: "0x" + c.evm.bytecode.object,
        deployedBytecode: "0x" + c.evm.deployedBytecode.object,
      };
    }
  }
  return artifacts;
}

function main() {
  const check = process.argv.includes("--check");
  const artifacts = compile();
  let differs = 0;
  if (!check) fs.mkdirSync(OUT_DIR, { recursive: true });
  for (const name of Object.keys(artifacts).sort()) {
    const file = path.join(OUT_DIR, `${name}.json`);
    const text = JSON.stringify(artifacts[name], null, 2) + "\n";
    if (check) {
      const committed = fs.existsSync(file) ? fs.readFileSync(file, "utf8") : null;
      if (committed !== text) {
        process.stderr.write(`artifact differs from a fresh compile: ${path.relative(ROOT, file)}\n`);
        differs += 1;
      }
    } else {
      fs.writeFileSync(file, text);
      process.stdout.write(`wrote ${path.relative(ROOT, file)}\n`);
    }
  }
  if (check) {
    const stale = fs.readdirSync(OUT_DIR).filter((f) => f.endsWith(".json") && !(f.slice(0, -5) in artifacts));
    for (const f of stale) process.stderr.write(`artifact has no source: ${f}\n`);
    differs += stale.length;
    if (differs) process.exit(1);
    process.stdout.write(`${Object.keys(artifacts).length} artifacts match a fresh compile (solc ${solc.version()})\n`);
  }
}

main();
