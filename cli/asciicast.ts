/** The asciicast export lives with the event model (the console serves it too); re-exported for the CLI. */
export * from '../core/events/asciicast.ts';
