// One runner for every suite; integration suites that need root, namespaces or daemons
// check for them and print why they skip (CI installs everything, so nothing skips there).
module.exports = {
  require: ['tsx/cjs', './test/helpers/setup.ts'],
  extension: ['ts'],
  spec: process.env.POLYGATE_TEST_SPEC ? process.env.POLYGATE_TEST_SPEC.split(',') : ['test/**/*.test.ts'],
  timeout: 60000,
  exit: true,
};
