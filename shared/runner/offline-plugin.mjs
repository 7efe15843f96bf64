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
    // Before osls checks the configuration: the trigger's limits with AWS's message (`serverless offline` only).
    this.asyncInit = async () => {
      if (serverless.processedInput?.commands?.[0] === 'offline') await (await load()).asyncInit();
    };
  }
}
