import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { expect } from 'chai';
import ts from 'typescript';

/**
 * Outside the protocol table (core/protocols/), the schema (core/db/, whose column names and
 * migrations are history) and plugins/, no code in core/ or api/ names a protocol: every place
 * that differs by protocol reads the table, so a protocol's plugin is all a new one needs.
 * Comments are not code and are not checked; identifiers and string literals are.
 */
const ROOT = path.resolve(__dirname, '../..');
const PROTOCOL_WORDS = /openvpn|l2tp|cisco|ocserv|wireguard|\bwg_|_wg\b|wg1/i;
const EXEMPT = ['core/protocols/', 'core/db/'];

function codeFiles(): string[] {
  const listed = execFileSync('git', ['ls-files', '--cached', '--others', '--exclude-standard', 'core', 'api'], { cwd: ROOT, encoding: 'utf8' });
  return listed.split('\n').filter((f) => f.endsWith('.ts') && !EXEMPT.some((e) => f.startsWith(e)));
}

/** `file:line: token` for every identifier or string naming a protocol (comments are not nodes, so not checked). */
export function protocolLiterals(file: string, text: string): string[] {
  const source = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true);
  const found: string[] = [];
  const visit = (node: ts.Node): void => {
    let token: string | null = null;
    if (ts.isIdentifier(node) || ts.isPrivateIdentifier(node)) token = node.text;
    else if (ts.isStringLiteral(node) || ts.isNoSubstitutionTemplateLiteral(node) || ts.isTemplateHead(node) || ts.isTemplateMiddle(node) || ts.isTemplateTail(node)) token = node.text;
    if (token !== null && PROTOCOL_WORDS.test(token)) found.push(`${file}:${source.getLineAndCharacterOfPosition(node.getStart()).line + 1}: ${token}`);
    ts.forEachChild(node, visit);
  };
  visit(source);
  return found;
}

describe('protocol names live in the protocol table only', () => {
  it('the scanner finds a protocol named in code and ignores comments', () => {
    expect(protocolLiterals('x.ts', "// wireguard in a comment\n/** `cisco` in TSDoc */\nconst a = 'openvpn';\nconst enable_wg1 = 1;\nconst t = `${a}_l2tp`;")).to.deep.equal([
      'x.ts:3: openvpn',
      'x.ts:4: enable_wg1',
      'x.ts:5: _l2tp',
    ]);
  });

  it('no identifier or string in core/ or api/ outside the table and the schema names a protocol', () => {
    const found = codeFiles().flatMap((f) => protocolLiterals(f, readFileSync(path.join(ROOT, f), 'utf8')));
    expect(found, `read these from core/protocols/table.ts instead:\n  ${found.join('\n  ')}`).to.deep.equal([]);
  });
});
