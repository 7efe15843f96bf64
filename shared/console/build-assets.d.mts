/** The console's assets as served: see build-assets.mjs. */
export interface ConsoleAssets {
  html: string;
  css: string;
  js: string;
}

export function buildConsoleAssets(): Promise<ConsoleAssets>;
