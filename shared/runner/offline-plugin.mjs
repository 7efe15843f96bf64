// Serverless loads plugins as plain JavaScript; this loads the TypeScript plugin through tsx.
import { tsImport } from 'tsx/esm/api';

const { default: RabbitMQTriggerOfflinePlugin } = await tsImport('./offline-plugin.ts', import.meta.url);

export default RabbitMQTriggerOfflinePlugin;
