// Serverless loads plugins as plain JavaScript, so this shim registers the hooks and loads the TypeScript
// plugin through tsx the first time one of them runs.
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
      ['offline:start:ready', 'offline:start:end'].map((hook) => [hook, async () => (await load()).hooks[hook]()]),
    );
  }
}
