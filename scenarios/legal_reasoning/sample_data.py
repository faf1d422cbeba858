"""The shipped legal-reasoning sample: 160 rows generated from a hand-written table of 32 issues
(4 for each of 8 argument techniques), in the columns of chemouda/legal_reason (ID,
Case_Description, Argument, Technique).

Each row is a fact pattern, an IRAC-style argument (issue, rule, application, conclusion) and the
technique the argument rests on. Deterministic: `python -m
tunecrew.scenarios.legal_reasoning.sample_data` rewrites data/sample.jsonl byte for byte.
Simplified common-law teaching rules, not legal advice.
"""

from __future__ import annotations

from pathlib import Path

from tunecrew.tools.rows import write_jsonl

SAMPLE = Path(__file__).parent / "data" / "sample.jsonl"

# (technique, facts with {a} {b} {amt}, issue, rule, application, conclusion)
ISSUES: tuple[tuple[str, ...], ...] = (
    ("Rule application",
     "{b} offered by letter to sell {a} a used tractor for {amt}. {a} posted a written acceptance on Monday. On "
     "Tuesday, before the acceptance arrived, {b} telephoned to revoke the offer, and now refuses to deliver.",
     "whether a contract was formed before the revocation",
     "under the postal acceptance rule, an acceptance sent by post is effective "
     "when it is posted, while a revocation is effective only when received",
     "{a}'s acceptance took effect on Monday when posted; {b}'s "
     "revocation on Tuesday came after the contract already existed",
     "a binding contract was formed and {b} is in breach by refusing to deliver"),
    ("Rule application",
     "A customer, {a}, slipped on spilled yoghurt in an aisle of {b}'s supermarket. Staff had been told "
     "about the spill two hours earlier but had not cleaned it. {a} broke a wrist and lost {amt} in wages.",
     "whether {b} is liable in negligence",
     "negligence requires a duty of care, a breach of that duty, causation "
     "and damage; an occupier owes visitors reasonable care for their safety",
     "{b} owed {a} a duty as a visitor, breached it by leaving a known hazard "
     "for two hours, and the fall caused the broken wrist and lost wages",
     "{b} is liable in negligence for {a}'s injury and losses"),
    ("Rule application",
     "For sixteen years {a} fenced off and farmed a strip of land that belongs to "
     "{b}, openly and without permission. The limitation period for recovering "
     "land in the jurisdiction is fifteen years. {b} now sues to recover the strip.",
     "whether {a} has acquired title by adverse possession",
     "possession that is open, continuous, exclusive and without the owner's "
     "consent for the full limitation period extinguishes the owner's title",
     "{a}'s fencing and farming were open, exclusive and without consent, "
     "and lasted sixteen years, longer than the fifteen-year period",
     "{a} has acquired title to the strip and {b}'s claim fails"),
    ("Rule application",
     "While queuing for concert tickets, {b} deliberately shoved {a} aside to get ahead. {a} was not hurt but was "
     "humiliated in front of the crowd and sues for {amt}.",
     "whether the shove is a battery although it caused no injury",
     "battery is the intentional application of harmful or offensive contact "
     "to another person without consent; no physical injury is required",
     "{b} intended the contact, {a} did not consent, and a deliberate shove is offensive contact even without injury",
     "{b} committed battery and {a} may recover damages"),
    ("Analogy to precedent",
     "{b} kept a pet capuchin monkey at home. The monkey escaped and bit {a}, a neighbour, "
     "who needed treatment costing {amt}. {b} had never seen the monkey act aggressively. "
     "A precedent held the keeper of a bear strictly liable for the harm it caused.",
     "whether {b} is strictly liable for the bite",
     "the keeper of an animal of a dangerous, wild species is "
     "strictly liable for the harm it causes, whatever care was taken",
     "like the bear in the precedent, a monkey belongs to a wild species not domesticated "
     "in the jurisdiction, so the same rule applies whatever its past behaviour",
     "by analogy to the bear case, {b} is strictly liable to {a}"),
    ("Analogy to precedent",
     "{b}, an off-duty lifeguard, began to pull a swimmer, {a}, out of a river, then let go "
     "halfway to answer a phone call; {a} was swept downstream and injured. A precedent held that "
     "a passer-by who began a rescue and abandoned it, leaving the victim worse off, was liable.",
     "whether {b} owed {a} a duty once the rescue began",
     "there is generally no duty to rescue, but one who voluntarily "
     "undertakes a rescue must not leave the victim in a worse position",
     "as in the precedent, {b} chose to start the rescue and then abandoned "
     "it, and {a} ended up further downstream and worse off than before",
     "following the precedent, {b} assumed a duty and is liable for {a}'s injuries"),
    ("Analogy to precedent",
     "{a} bought a ladder from a hardware shop. The rung, defectively welded by the manufacturer {b}, snapped "
     "and {a} was injured, incurring {amt} in costs. {b} argues it had no contract with {a}. A precedent held "
     "a car maker liable to the driver of a car with a defective wheel bought through a dealer.",
     "whether a manufacturer owes a duty to an end user it has no contract with",
     "a manufacturer of a product that is dangerous if negligently made "
     "owes a duty of care to its foreseeable users, regardless of privity",
     "like the defective wheel, a badly welded rung makes a ladder "
     "dangerous, and {a} is exactly the kind of end user {b} could foresee",
     "by analogy to the car case, {b} owed {a} a duty and is liable"),
    ("Analogy to precedent",
     "{a}, a tenant, was assaulted in a building lobby after the front-door lock, controlled by the "
     "landlord {b}, had been broken for a month despite complaints. A precedent held a landlord "
     "liable when a tenant fell on a common stairway whose lighting the landlord had failed to repair.",
     "whether {b} is responsible for security in the common areas",
     "a landlord who keeps control of common areas must take reasonable care to keep them reasonably safe for tenants",
     "as with the stair lighting, the front-door lock is part of the common "
     "area under {b}'s control, and a known defect was left unrepaired",
     "by analogy to the stairway case, {b} breached its duty and is liable to {a}"),
    ("Distinguishing precedent",
     "{a} slipped on a freshly mopped floor in {b}'s café. A yellow warning cone and "
     "a sign reading 'Wet floor' stood beside the wet area. {a} relies on a precedent "
     "in which a shop was liable for a fall on a wet floor that carried no warning.",
     "whether the precedent makes {b} liable",
     "an occupier must take reasonable care, and an adequate warning "
     "can discharge that duty for an obvious temporary hazard",
     "the precedent turned on the absence of any warning; here a cone and "
     "a sign were placed beside the wet area, so the material facts differ",
     "the precedent is distinguishable and {b} did not breach its duty"),
    ("Distinguishing precedent",
     "{b} drove a delivery van for {a}'s employer. After the last delivery, {b} drove forty miles in the opposite "
     "direction to visit a friend and crashed into {a}'s car, causing {amt} in damage. {a} sues the employer, relying "
     "on a precedent in which an employer was liable for a crash that a driver caused while on the delivery route.",
     "whether the employer is vicariously liable for the crash",
     "an employer is vicariously liable for torts committed in the "
     "course of employment, but not for an employee's independent frolic",
     "in the precedent the driver was doing the employer's work on the route; "
     "here {b} had finished work and was on a personal journey far away",
     "the precedent is distinguishable and the employer is not vicariously liable"),
    ("Distinguishing precedent",
     "{a} signed a storage contract with {b}. Just above the signature line, in bold type, a clause excluded "
     "liability for water damage. Goods worth {amt} were damaged by a leak. {a} relies on a precedent in "
     "which an exclusion printed on a ticket handed over after the contract was made was not binding.",
     "whether the exclusion clause is part of the contract",
     "a term is incorporated if it is in a signed document or fairly "
     "brought to the other party's notice before the contract is made",
     "in the precedent the clause came after the contract on an unsigned ticket; "
     "here {a} signed a document with the clause in bold above the signature",
     "the precedent is distinguishable and the exclusion clause binds {a}"),
    ("Distinguishing precedent",
     "{b} promised in writing to give {a} {amt} toward a new home. Relying on the "
     "promise, {a} sold a flat and signed a purchase contract; {b} then withdrew. {b} "
     "relies on a precedent holding that a bare promise of a gift is unenforceable.",
     "whether the gratuitous promise can be enforced",
     "a promise without consideration is generally unenforceable, but promissory estoppel applies "
     "where the promisor should expect reliance and the promisee relies to their detriment",
     "the precedent involved no reliance at all; here {a} sold "
     "a flat and committed to a purchase because of the promise",
     "the precedent is distinguishable and {b} is estopped from withdrawing the promise"),
    ("Plain meaning interpretation",
     "{a}'s lease states that the tenant 'shall not keep any dog on the premises'. {a} keeps a cat. The "
     "landlord, {b}, argues that the clause was meant to exclude all pets and seeks to end the lease.",
     "whether keeping a cat breaches the clause",
     "contract terms are given their ordinary and natural meaning unless "
     "that leads to absurdity or the context clearly shows another meaning",
     "the ordinary meaning of 'dog' does not include a cat, and "
     "nothing in the lease suggests the word was used to mean any pet",
     "keeping a cat does not breach the lease and {b} cannot end it on that ground"),
    ("Plain meaning interpretation",
     "{a}'s insurance policy with {b} covers 'theft from a locked vehicle'. {a} left "
     "the car unlocked outside a shop and a laptop worth {amt} was taken from the seat.",
     "whether the loss falls within the theft cover",
     "clear words in an insurance policy are applied according to their plain meaning; "
     "ambiguity is construed against the insurer, but there must be real ambiguity",
     "the words 'locked vehicle' are clear, and the car was not locked when the laptop was taken",
     "the loss is outside the cover and {b} need not pay"),
    ("Plain meaning interpretation",
     "A contract required {b} to deliver printed brochures to {a} 'by 5 p.m. on 1 March'. The "
     "courier arrived at 5:20 p.m. on 1 March and {a} refused the delivery, which was worth {amt}.",
     "whether the delivery was late",
     "where the parties fix an exact time for performance, the words are applied as written",
     "'By 5 p.m.' plainly means no later than 5 p.m., and delivery at 5:20 p.m. was after that time",
     "{b} delivered late and is in breach of the delivery term"),
    ("Plain meaning interpretation",
     "A statute grants 'any employee' the right to four weeks of parental leave. {a}, who works part-time "
     "for {b}, asked for leave; {b} refused, arguing that the statute was aimed at full-time staff.",
     "whether part-time workers are covered by the statute",
     "statutory words are given their ordinary meaning, and "
     "courts will not read in limits the legislature did not write",
     "'Any employee' is unqualified, and a part-time worker under a contract of employment is plainly an employee",
     "{a} is entitled to parental leave and {b}'s refusal is unlawful"),
    ("Purposive interpretation",
     "A by-law says 'no vehicles are allowed in the park'. {a}, an ambulance driver, drove into "
     "the park to reach a collapsed jogger and was fined by the council, represented by {b}.",
     "whether the ambulance entry breached the by-law",
     "where the literal words would defeat the purpose of a provision, the court "
     "reads them in light of the mischief the provision was made to prevent",
     "the by-law exists to keep the park safe and quiet for its users; an "
     "ambulance saving a park user serves that purpose rather than defeating it",
     "read purposively, the by-law does not cover the emergency entry and the fine should be quashed"),
    ("Purposive interpretation",
     "A housing statute protects 'tenants' from eviction without three months' notice. "
     "{a} has rented a room in {b}'s house for six years, paying {amt} a month. {b} "
     "evicted {a} with one week's notice, arguing that {a} was only a lodger.",
     "whether the statute protects a long-term lodger",
     "remedial legislation is read to advance its purpose, and doubtful "
     "words are resolved in favour of the people it was made to protect",
     "the statute's purpose is security of housing; {a} has made the "
     "room a home for six years and faces the same harm a tenant would",
     "read purposively, {a} is protected and the eviction without three months' notice was unlawful"),
    ("Purposive interpretation",
     "A consumer statute requires 'goods sold' to be of satisfactory quality. {a} "
     "paid {b} {amt} for photo-editing software that was downloaded, not delivered on "
     "a disc, and it crashes on start-up. {b} argues that a download is not 'goods'.",
     "whether downloaded software is covered by the statute",
     "consumer protection legislation is interpreted to achieve its protective purpose as technology changes",
     "the statute aims to protect buyers of defective products; whether software "
     "arrives on a disc or by download makes no difference to that purpose",
     "read purposively, the software is covered and {a} is entitled to a remedy"),
    ("Purposive interpretation",
     "A by-law makes it an offence to 'sleep in the railway station'. {a}, waiting for a train "
     "delayed by four hours, dozed off on a bench and was charged by the transport authority, {b}.",
     "whether dozing while waiting for a delayed train is an offence",
     "a penal provision is read in light of its purpose, and conduct outside the mischief it targets is not caught",
     "the by-law targets people using the station as a place to sleep "
     "overnight, not passengers who nod off while waiting for a train",
     "read purposively, {a} committed no offence and the charge should be dismissed"),
    ("Policy argument",
     "A contractor, {b}, negligently cut a power cable. {a}'s factory, a mile away, lost "
     "a day's production worth {amt}, but none of its property was damaged. {a} sues {b}.",
     "whether {b} owes a duty for pure economic loss",
     "courts generally refuse recovery for pure economic loss "
     "caused by negligence, because liability would be indeterminate",
     "one cut cable can affect thousands of businesses; allowing {a} to recover would "
     "open the floodgates to claims in an indeterminate amount by an indeterminate class",
     "for reasons of policy there is no duty, and {a}'s claim for lost production fails"),
    ("Policy argument",
     "{a} worked as a junior barista for {b}'s coffee chain. The employment contract bars {a} from working "
     "at any café in the city for five years after leaving. {a} has been offered a job at another café.",
     "whether the non-compete clause can be enforced",
     "restraints of trade are void as contrary to public policy unless "
     "reasonable and no wider than needed to protect a legitimate interest",
     "a junior barista has no trade secrets or client connections worth protecting, "
     "and a five-year citywide ban would prevent {a} from earning a living",
     "the restraint is contrary to public policy and unenforceable against {a}"),
    ("Policy argument",
     "Police searched {a}'s home without a warrant and without consent or urgency, and found "
     "stolen goods worth {amt}. The prosecution, led by {b}, wants to use them at trial.",
     "whether the evidence should be excluded",
     "evidence obtained by a serious and deliberate breach of constitutional rights may "
     "be excluded to deter unlawful police conduct and protect the integrity of the courts",
     "admitting evidence from a deliberate warrantless home search "
     "would reward the breach and encourage it to be repeated",
     "the evidence should be excluded on public policy grounds"),
    ("Policy argument",
     "{a} agreed to pay {b} {amt} to bribe a planning officer into approving {a}'s building "
     "application. {a} paid, the bribe was never made, and {a} now sues {b} to recover the money.",
     "whether the court will enforce a claim arising from an illegal agreement",
     "courts will not lend their aid to a party whose claim rests on an illegal or immoral agreement",
     "the agreement's whole purpose was to corrupt a public official, "
     "and enforcing it would undermine the integrity of the legal system",
     "for reasons of public policy the court will not assist {a}, and the claim fails"),
    ("Burden of proof",
     "{a} is charged with theft from {b}'s shop. The only prosecution evidence is a blurry CCTV image "
     "of a person in a similar jacket, and a witness says {a} was at work across town at the time.",
     "whether the prosecution has proved its case",
     "in a criminal trial the prosecution must prove every element of "
     "the offence beyond reasonable doubt; the accused need prove nothing",
     "a blurry image of a similar jacket does not identify {a}, and the alibi evidence raises a reasonable doubt",
     "the prosecution has not discharged its burden and {a} should be acquitted"),
    ("Burden of proof",
     "A fire started in {b}'s warehouse and spread to {a}'s neighbouring shop, causing {amt} "
     "of damage. Fire investigators could not find the cause. {a} sues {b} in negligence.",
     "whether {a} can establish negligence",
     "the claimant must prove negligence on the balance of probabilities; "
     "a fire of unknown cause does not by itself show a breach",
     "with no evidence of how the fire started, {a} cannot show "
     "that any act or omission by {b} more likely than not caused it",
     "{a} has not discharged the burden of proof and the claim fails"),
    ("Burden of proof",
     "{a}, aged 58, was dismissed by {b} and replaced by a 30-year-old with less experience. "
     "{a}'s performance reviews were good. {b} has offered no reason for the dismissal.",
     "whether {a} can succeed in an age discrimination claim",
     "once an employee establishes facts from which discrimination could be inferred, "
     "the burden shifts to the employer to show a legitimate, non-discriminatory reason",
     "{a}'s age, good reviews and replacement by a much younger, less "
     "experienced worker raise an inference, and {b} has given no explanation",
     "the burden shifted to {b} and was not discharged, so {a} should succeed"),
    ("Burden of proof",
     "After abdominal surgery at {b}'s hospital, {a} suffered pain for months; a scan showed "
     "a surgical sponge left inside. {a} cannot say which member of staff was at fault.",
     "whether {a} can prove negligence without identifying the negligent act",
     "under res ipsa loquitur, where the thing was under the defendant's control and the harm would "
     "not normally occur without negligence, negligence may be inferred and the defendant must explain",
     "sponges are not left inside patients without negligence, and the surgery was entirely under {b}'s control",
     "negligence is inferred, the burden of explanation falls on {b}, and without one {b} is liable"),
    ("Procedural bar",
     "{a} was injured in a car accident caused by {b}. The limitation period for personal injury claims is "
     "three years. {a} filed the claim for {amt} four years after the accident, with no reason for the delay.",
     "whether the claim is time-barred",
     "a claim brought after the limitation period has expired is "
     "barred unless a statutory extension or exception applies",
     "the claim was filed a year after the three-year period ended, and no extension or exception applies",
     "the claim is time-barred and should be dismissed"),
    ("Procedural bar",
     "{a} sued {b} for {amt} under a supply contract and lost after a full trial. {a} has "
     "now started a new action against {b} on the same contract, raising the same breach.",
     "whether the second action can proceed",
     "res judicata bars a party from relitigating a claim that has "
     "been finally decided on the merits between the same parties",
     "the new action involves the same parties, the same contract and the same breach already decided against {a}",
     "the second action is barred by res judicata and should be struck out"),
    ("Procedural bar",
     "{a} sues to cancel a sale of land between {b} and a developer, arguing the price of {amt} was "
     "too low. {a} is not a party to the sale, owns no nearby property and suffers no loss from it.",
     "whether {a} may bring the claim",
     "a claimant must have standing: a sufficient personal interest "
     "in the matter, such as a right affected or a loss suffered",
     "{a} is a stranger to the transaction and has no right or interest that the sale affects",
     "{a} lacks standing and the claim should be dismissed"),
    ("Procedural bar",
     "{a} lost a judgment for {amt} against {b}. The rules allow 30 days to file an "
     "appeal. {a} filed the appeal on day 45 without applying for an extension of time.",
     "whether the appeal can be heard",
     "an appeal filed outside the time limit cannot proceed unless the court grants an extension of time",
     "{a} filed fifteen days late and made no application to extend time",
     "the appeal is out of time and should be dismissed"),
)

NAMES = (("Ms Alvarez", "Mr Brennan"), ("Acme Farms Ltd", "Dr Okafor"), ("Mr Chen", "Northgate Properties"),
         ("Ms Dubois", "Harbour Logistics"), ("Mr Eriksen", "Ms Fontaine"))
AMOUNTS = ("$8,500", "$12,000", "$3,200", "$25,000", "$40,000")
QUESTIONS = ("What argument should counsel for {a} make?", "How should a court analyse {a}'s position?",
             "Construct the strongest argument for {a}.", "What is the likely outcome, and why?",
             "Advise {a} on the merits.")


def rows() -> list[dict]:
    out = []
    for i, (technique, facts, issue, rule, application, conclusion) in enumerate(ISSUES):
        for v in range(5):
            a, b = NAMES[(i + v) % len(NAMES)]
            fill = {"a": a, "b": b, "amt": AMOUNTS[(2 * i + v) % len(AMOUNTS)]}
            case = facts.format(**fill) + " " + QUESTIONS[(i + v) % len(QUESTIONS)].format(**fill)
            argument = (f"Issue: {issue.format(**fill)}. Rule: {rule.format(**fill)}. "
                        f"Application: {application.format(**fill)}. Conclusion: {conclusion.format(**fill)}.")
            case, argument = (t.replace("s's ", "s' ") for t in (case, argument))  # Logistics', not Logistics's
            out.append({"ID": f"LR-{i * 5 + v + 1:03d}", "Case_Description": case, "Argument": argument,
                        "Technique": technique})
    return out


if __name__ == "__main__":
    print(write_jsonl(rows(), SAMPLE))
