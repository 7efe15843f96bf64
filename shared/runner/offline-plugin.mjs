// Serverless loads plugins as plain JavaScript, so this shim registers the hooks and loads the TypeScript
// plugin through tsx the first time one of them runs (for `serverless offline`, in asyncInit already).
export default class RabbitMQTriggerOfflinePlugin {
  constructor(serverless, options, utils) {
    let plugin;
    const load = async () => {
      if (!plugin) {
        const { tsImport } = await import('tsx/esm/api');
        const { default: Plugin } = await tsImport('./offline-plugin.ts', import.meta.url);
        plugin = new Plugin(serverless, options, utils);
      }
      return plugin;
    };
    this.hooks = Object.fromEntries(
      ['before:offline:start:init', 'offline:start:ready', 'offline:start:end'].map((hook) => [
        hook,
        async () => (await load()).hooks[hook](),
      ]),
    );
    // Before osls checks the configuration: the trigger's limits with AWS's message, for `serverless offline` and
    // for what builds or ships a deployment (`package`, `deploy`: CloudFormation would refuse it there).
    this.asyncInit = async () => {
      if (['offline', 'package', 'deploy'].includes(serverless.processedInput?.commands?.[0])) await (await load()).asyncInit();
    };
  }
}
