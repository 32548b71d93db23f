export class Node extends EventTarget { constructor() { super(); throw new Error('not implemented yet'); } }
