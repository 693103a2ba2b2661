'use strict';
// Loads the native addon built for this platform (`napi build --platform`
// names it tierstack.<platform>-<arch>[-<abi>].node).
const { existsSync } = require('node:fs');
const { join } = require('node:path');

function abi() {
  if (process.platform !== 'linux') return [];
  const report = typeof process.report?.getReport === 'function' ? process.report.getReport() : null;
  const glibc = report?.header?.glibcVersionRuntime;
  return glibc ? ['gnu'] : ['musl'];
}

function candidates() {
  const base = `${process.platform}-${process.arch}`;
  const suffixes = abi();
  const names = suffixes.map((s) => `tierstack.${base}-${s}.node`);
  if (process.platform === 'win32') names.push(`tierstack.${base}-msvc.node`);
  names.push(`tierstack.${base}.node`, 'tierstack.node');
  return names;
}

function load() {
  const tried = [];
  for (const name of candidates()) {
    const path = join(__dirname, name);
    tried.push(path);
    if (existsSync(path)) return require(path);
  }
  throw new Error(
    `tierstack: no native addon for ${process.platform}-${process.arch}; build it with ` +
      `\`npm run build\` in ${__dirname}. Looked for:\n  ${tried.join('\n  ')}`,
  );
}

const native = load();

module.exports = native;
