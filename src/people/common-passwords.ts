/**
 * The most common passwords of public breach corpora (lower-cased), with the usual 12-character and
 * longer variants people pick to pass a length rule. A password equal to one of these, or to one
 * of them with digits or punctuation appended, is refused.
 */
const LIST = `123456 password 12345678 qwerty 123456789 12345 1234 111111 1234567 dragon 123123 baseball abc123 football
monkey letmein 696969 shadow master 666666 qwertyuiop 123321 mustang 1234567890 michael 654321 pussy superman 1qaz2wsx
7777777 121212 000000 qazwsx 123qwe killer trustno1 jordan jennifer zxcvbnm asdfgh hunter buster soccer harley batman
andrew tigger sunshine iloveyou 2000 charlie robert thomas hockey ranger daniel starwars klaster 112233 george computer
michelle jessica pepper 1111 zxcvbn 555555 11111111 131313 freedom 777777 pass maggie 159753 aaaaaa ginger princess
joshua cheese amanda summer love ashley nicole chelsea biteme matthew access yankees 987654321 dallas austin thunder
taylor matrix mobilemail mom monitor monitoring montana moon moscow welcome welcome1 welcome123 admin admin123
administrator root toor passw0rd p@ssw0rd p@ssword password1 password12 password123 password1234 passwordpassword
qwerty123 qwerty1234 qwertyuiop123 qwertyuiopasdf qwertyuiopasdfgh qwertyuiopasdfghjkl 1q2w3e4r 1q2w3e4r5t 1q2w3e4r5t6y
1qaz2wsx3edc zaq12wsx zaq1zaq1 123456789012 1234567890123 12345678901234 123456789a 123456789abc 1234qwer 12341234
123123123 123123123123 111111111111 000000000000 abcdefghijkl abcdefghijklmnop abcd1234 abc12345 iloveyou1 iloveyou123
iloveyou1234 iloveyouforever letmein123 letmeinnow changeme changeme123 changeit secret secret123 default guest
football123 baseball123 superman123 batman123 starwars123 pokemon pokemon123 minecraft minecraft123 fortnite
sunshine123 princess123 dragon123 monkey123 master123 shadow123 liverpool chelsea123 arsenal manchester
correcthorsebatterystaple trustno1trustno1 whatever whatever123 nothing nopassword mypassword mypassword123
thisismypassword ilovemyfamily ilovemymom iloveyoubaby loveyou lovely babygirl qazwsxedc qazwsxedcrfv
asdfghjkl asdfghjkl123 zxcvbnm123 asdf1234 asdfasdf asdfasdfasdf qweasdzxc qweasd q1w2e3r4 q1w2e3r4t5
google facebook linkedin twitter instagram youtube samsung apple microsoft windows linux ubuntu oracle
tessera tessera123 tesseratessera quantum quantum123 quantumcomputing qiskit qiskit123 ibmquantum
internet computer123 server database testing test test123 test1234 testtest testtesttest temp temp123
summer2024 summer2025 summer2026 winter2024 winter2025 winter2026 spring2025 spring2026 autumn2025
january february march april june july august september october november december
monday tuesday wednesday thursday friday saturday sunday
1234512345 0987654321 9876543210 147258369 741852963 159357 789456123 123654789 a1b2c3d4 a1b2c3d4e5f6`;

export const COMMON_PASSWORDS: ReadonlySet<string> = new Set(LIST.split(/\s+/).filter(Boolean));

/** True when the password is a common one, ignoring case and trailing digits or punctuation. */
export function isCommonPassword(password: string): boolean {
  const p = password.toLowerCase();
  if (COMMON_PASSWORDS.has(p)) return true;
  const stem = p.replace(/[\d\W_]+$/, '');
  if (stem.length > 0 && COMMON_PASSWORDS.has(stem)) return true;
  // One word repeated ("passwordpassword", "abcabcabcabc").
  for (let n = 1; n <= p.length / 2; n++) {
    if (p.length % n === 0 && p.slice(0, n).repeat(p.length / n) === p) return true;
  }
  return false;
}
