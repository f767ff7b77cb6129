/*
 * Handler resolution, following aws-lambda-ric's UserFunction.js:
 * "dir/sub/file.prop.fn" -> module "file" in LAMBDA_TASK_ROOT/dir/sub,
 * handler = exports.prop.fn. Extensionless and .js files are require()d
 * unless the nearest package.json says "type": "module" (then import()),
 * then .mjs (import()) and .cjs (require); last, Node's own resolution from
 * the task root. Failures carry AWS's Runtime.* error names.
 */
'use strict';

const fs = require('fs');
const path = require('path');
const { pathToFileURL } = require('url');

function runtimeError(name, message, stack) {
  const e = new Error(message);
  e.name = name;
  if (stack) e.stack = stack;
  return e;
}

function hasTypeModule(folder) {
  for (;;) {
    if (folder.endsWith('/node_modules')) return false;
    const pj = path.join(folder, 'package.json');
    if (fs.existsSync(pj)) {
      try {
        return JSON.parse(fs.readFileSync(pj, 'utf8')).type === 'module';
      } catch (_) {
        return false;
      }
    }
    const parent = path.dirname(folder);
    if (parent === folder) return false;
    folder = parent;
  }
}

function tryRequire(file) {
  return fs.existsSync(file) ? require(file) : undefined;
}

async function tryImport(file) {
  return fs.existsSync(file) ? import(pathToFileURL(file).href) : undefined;
}

async function loadModule(taskRoot, moduleRoot, name) {
  const base = path.resolve(taskRoot, moduleRoot, name);
  let m = tryRequire(base);
  if (m) return m;
  const esm = hasTypeModule(path.dirname(base));
  if (!esm) {
    m = tryRequire(base + '.js');
    if (m) return m;
  }
  m = (esm && (await tryImport(base + '.js'))) ||
    (await tryImport(base + '.mjs')) ||
    tryRequire(base + '.cjs');
  if (m) return m;
  return require(require.resolve(name, { paths: [path.resolve(taskRoot, moduleRoot), taskRoot] }));
}

/* Returns the handler function or throws an Error named Runtime.*. */
async function loadHandler(taskRoot, handlerString) {
  if (!handlerString) throw runtimeError('Runtime.MalformedHandlerName', 'Bad handler: _HANDLER is not set');
  if (handlerString.includes('..')) {
    throw runtimeError('Runtime.MalformedHandlerName',
      `'${handlerString}' is not a valid handler name. Use absolute paths when specifying root directories in handler names.`);
  }
  const slash = handlerString.lastIndexOf('/');
  const moduleRoot = handlerString.slice(0, slash + 1);
  const match = /^([^.]*)\.(.*)$/.exec(handlerString.slice(slash + 1));
  if (!match) throw runtimeError('Runtime.MalformedHandlerName', 'Bad handler');
  const [, moduleName, handlerPath] = match;

  let userApp;
  try {
    userApp = await loadModule(taskRoot, moduleRoot, moduleName);
  } catch (e) {
    if (e instanceof SyntaxError) {
      throw runtimeError('Runtime.UserCodeSyntaxError', String(e), e.stack);
    }
    if (e && (e.code === 'MODULE_NOT_FOUND' || e.code === 'ERR_MODULE_NOT_FOUND')) {
      throw runtimeError('Runtime.ImportModuleError', String(e), e.stack);
    }
    throw e;
  }
  const fn = handlerPath.split('.').reduce((obj, key) => (obj == null ? undefined : obj[key]), userApp);
  if (!fn) throw runtimeError('Runtime.HandlerNotFound', `${handlerString} is undefined or not exported`);
  if (typeof fn !== 'function') throw runtimeError('Runtime.HandlerNotFound', `${handlerString} is not a function`);
  return fn;
}

module.exports = { loadHandler, runtimeError };
