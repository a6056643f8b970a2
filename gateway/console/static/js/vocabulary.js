// The suite's names, from the code that defines them (shared/events/contracts.py for segments,
// kinds and stages, shared/settings.py for services, gateway/access/roles.py for roles), sent
// in /console/config.json: one source, so a new segment or role appears here by itself.

export const vocabulary = { segments: [], kinds: [], stages: [], services: [], roles: [] };

export function learn(config) {
  Object.assign(vocabulary, (config && config.vocabulary) || {});
}
