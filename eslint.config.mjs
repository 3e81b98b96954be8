// ESLint flat config: typescript-eslint recommended rules over the whole project.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'var/**', 'bench/results/**', '.tap/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ['**/*.ts'],
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/no-explicit-any': 'error',
      'no-restricted-syntax': ['error', { selector: 'ExportDefaultDeclaration', message: 'Named exports only.' }],
    },
  },
  {
    // The operator web page: plain browser modules, no build step.
    files: ['lib/operator/web/**/*.js'],
    languageOptions: {
      sourceType: 'module',
      globals: Object.fromEntries(
        [
          'window', 'document', 'location', 'sessionStorage', 'console', 'fetch', 'URL', 'URLSearchParams', 'FormData', 'Blob',
          'AbortController', 'TextDecoder', 'TextDecoderStream', 'Node', 'setTimeout', 'clearTimeout', 'setInterval', 'clearInterval',
          'requestAnimationFrame', 'Event', 'CustomEvent', 'HTMLElement', 'navigator', 'confirm', 'alert',
        ].map((name) => [name, 'readonly']),
      ),
    },
    rules: {
      // SIP text is attacker-controlled: the page builds nodes and sets textContent only.
      'no-restricted-properties': ['error',
        { property: 'innerHTML', message: 'SIP text is attacker-controlled: build nodes with h() / textContent.' },
        { property: 'outerHTML', message: 'SIP text is attacker-controlled: build nodes with h() / textContent.' },
        { property: 'insertAdjacentHTML', message: 'SIP text is attacker-controlled: build nodes with h() / textContent.' },
      ],
    },
  },
  {
    files: ['scripts/**/*.mjs'],
    languageOptions: { globals: { process: 'readonly', console: 'readonly', URL: 'readonly' } },
  },
);
