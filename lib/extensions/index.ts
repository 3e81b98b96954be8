// The extension store (Kamailio's subscriber and location tables in SQLite): schema,
// migrations, and add / list / remove / passwd.

export * from './errors';
export * from './schema';
export * from './store';
export * from './validate';
