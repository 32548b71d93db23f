export class Stream extends EventTarget {}
