export declare function hasCommand(command: string): boolean
export declare function installMissingCommands(
  commands: Record<string, string>,
  options?: { recommends?: boolean },
): { stillMissing: [command: string, pkg: string][]; tried: boolean; failure?: string }
