/**
 * The domain steps: plain functions over the store, one file per area. Functions import the area they need
 * (`../domain/orders`), so a bundle carries only its own; this index is for tools and tests.
 */
export * from './inventory';
export * from './notifications';
export * from './order-status';
export * from './orders';
