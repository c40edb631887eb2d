/**
 * Examples for the commands whose definitions do not carry their own, added to their
 * `--help` in one place (a test checks that every command's help has examples).
 */
import type { Command } from 'commander'

const EXAMPLES: Record<string, string[]> = {
  'id export-age': ['cloudbox id export-age > ~/.age/cloudbox.key && chmod 600 ~/.age/cloudbox.key', 'age -d -i ~/.age/cloudbox.key report.pdf.age > report.pdf'],
  status: ['cloudbox status --home ~/srv          # the running server: devices, storage, addresses', 'cloudbox status --home ~/laptop --json  # the cloud this device is paired with'],
  devices: ['cloudbox devices --home ~/srv', 'cloudbox devices --home ~/srv --json | jq -r \'.devices[] | select(.online) | .label\''],
  revoke: ['cloudbox revoke cb1qxy… --home ~/srv   # the device is dropped now and must pair again'],
  block: ['cloudbox block cb1qxy… --home ~/srv    # dropped now; unblock lets it back without pairing'],
  unblock: ['cloudbox unblock cb1qxy… --home ~/srv'],
  'pin add': ['cloudbox pin add --label phone --role member --expires 24h --home ~/srv', 'cloudbox pin add --label admin-laptop --role owner --pin 2468-1357 --home ~/srv'],
  'pin list': ['cloudbox pin list --home ~/srv'],
  'pin remove': ['cloudbox pin remove phone --home ~/srv'],
  'subcloud create': ['cloudbox subcloud create Accounting --quota 2GiB --home ~/srv'],
  'subcloud list': ['cloudbox subcloud list --home ~/srv --json'],
  'subcloud destroy': ['cloudbox subcloud destroy 1 --home ~/srv          # stop it; its files stay', 'cloudbox subcloud destroy 1 --wipe --home ~/srv   # and delete its files'],
  'inbox get': ['cloudbox inbox get 3f9c… -o report.pdf', 'cloudbox inbox get 3f9c… -o report.pdf --keep   # leave it in the drop box'],
  demo: ['cloudbox demo          # stays up with the status page until Ctrl-C', 'cloudbox demo --exit   # for scripts: exit 0 when everything worked'],
}

function path(command: Command): string {
  const names: string[] = []
  for (let at: Command | null = command; at?.parent; at = at.parent) names.unshift(at.name())
  return names.join(' ')
}

export function addHelpExamples(program: Command): void {
  const visit = (command: Command) => {
    const examples = EXAMPLES[path(command)]
    if (examples !== undefined) command.addHelpText('after', `\nExamples:\n${examples.map((line) => `  ${line}`).join('\n')}`)
    command.commands.forEach(visit)
  }
  visit(program)
}
