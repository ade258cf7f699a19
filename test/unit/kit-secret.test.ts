import { expect } from 'chai';
import { sameSecret } from '../../core';

/*
 * Constant-time secret compare. Proves: equal secrets match; any difference in content or
 * length does not, including a prefix and an empty secret; non-strings never match.
 */

describe('kit: sameSecret', () => {
  it('matches equal secrets only', () => {
    expect(sameSecret('s3cret', 's3cret')).to.equal(true);
    expect(sameSecret('', '')).to.equal(true);
    expect(sameSecret('s3cret', 's3creT')).to.equal(false);
    expect(sameSecret('s3cre', 's3cret')).to.equal(false);
    expect(sameSecret('s3cret', '')).to.equal(false);
    expect(sameSecret('pässword', 'pässword')).to.equal(true);
    expect(sameSecret(undefined as unknown as string, 'x')).to.equal(false);
  });
});
